"""Train the toy DDPM: a small diffusers UNet2DModel on rendered toy faces, EMA weights.

Runs on this course's 2-core CPU (bf16 autocast; hours) as well as on a GPU (minutes):

    python scripts/train_toy_ddpm.py --device cpu --batch 32 --time-limit 14400 --state state.pt --out data/toy_ddpm

The loss, per sample, with x_t = sqrt(ᾱ_t) x_0 + sqrt(1 - ᾱ_t) ε and SNR_t = ᾱ_t / (1 - ᾱ_t):

    --prediction v        L = w_t · |v_θ(x_t, t) - v|²,   v = sqrt(ᾱ_t) ε - sqrt(1 - ᾱ_t) x_0   (the default)
    --prediction epsilon  L = w_t · |ε_θ(x_t, t) - ε|²

    --min-snr 0           w_t = 1 (the plain loss; the default)
    --min-snr γ > 0       w_t = min(SNR_t, γ) / SNR_t (ε) or min(SNR_t, γ) / (SNR_t + 1) (v)
                          (min-SNR-γ, Hang et al. 2023: the error of P_t weighted by min(SNR_t, γ))

--skip-dropout P      for samples with t >= --skip-from, each up block's skip inputs are zeroed with
                      probability P (independently per block and sample), so that the decoder has to read from
                      the bottleneck h what those skips would have carried
--skip-swap P         the batch is made of pairs with the same t and noise; for t >= --skip-from, each up block's
                      skip inputs are exchanged within a pair with probability P, so that only h tells the
                      decoder which face of the pair it is denoising
--swap-pairs twins    with --skip-swap, each pair is a face and its twin: the same face (pose included) with one
                      attribute, chosen at random, drawn anew; so h has to carry the attributes, and only them
                      (``random``, the default: two unrelated faces, so h has to carry the whole face)
                      (both are experiments on making h carry the attributes; docs/model_card_log.md. Sampling and
                      the library always use every skip.)

In terms of the error of P_t (the predicted x_0), the plain ε loss weights it by SNR_t, the plain v loss by
SNR_t + 1. At t = 999 SNR_t is 4·10⁻⁵: an ε-model hardly learns P_t there, and P_t at high t is where a
sample's colours are decided (measured: model card). A v-model is still used through ε by the library
(``asyrp_lib.models.unets``). ``--amp bf16`` runs the forward pass under ``torch.autocast(dtype=torch.bfloat16)``
(CUDA, or a CPU with AVX-512 BF16; ``auto`` picks it where supported); the weights and the optimiser stay fp32.

Writes to --out: the EMA U-Net (``save_pretrained``, fp16 safetensors unless --fp32), the DDPM
scheduler config (``prediction_type``, ``clip_sample``), ``training.json`` (arguments, time, machine, losses)
and, unless --no-eval, ``metrics.json`` and ``samples.png``: of --eval-samples DDIM-50 samples, the share the
oracle reads as faces and each attribute's total-variation distance to renders; and the mean LPIPS between
fresh renders and their DDIM-40 inversion + regeneration. Training stops early, still saving, when
--time-limit seconds have passed; --state/--resume continue a run exactly, --init-from starts a new run
from existing weights (a folder written by this script, or one with ``fp32/raw.safetensors`` and
``fp32/ema.safetensors``).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asyrp_lib.core import ddim
from asyrp_lib.toy import toyworld  # noqa: E402
from asyrp_lib.models.profiles import CONFIG_DIR  # noqa: E402
from asyrp_lib.models.unets import load_folder  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="data/toy_ddpm")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--steps", type=int, default=12000)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--pool", type=int, default=60000, help="distinct faces rendered once and reused")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", default=str(CONFIG_DIR / "toy_unet.json"))
    p.add_argument("--time-limit", type=float, default=float("inf"), help="seconds of training before stopping")
    p.add_argument("--compile", action="store_true", help="torch.compile the U-Net (GPU)")
    p.add_argument("--prediction", choices=("v", "epsilon"), default="v", help="what the network predicts")
    p.add_argument("--min-snr", type=float, default=0.0, help="γ of min-SNR-γ loss weighting (0: plain loss)")
    p.add_argument("--amp", choices=("auto", "bf16", "none"), default="auto",
                   help="bf16 autocast of the forward pass (auto: where the device supports it)")
    p.add_argument("--clip-sample", choices=("on", "off"), default="on",
                   help="the scheduler config's clip_sample: sampling clamps P_t to [-1, 1]")
    p.add_argument("--init-from", default=None, help="start from these weights (not --resume: a new run)")
    p.add_argument("--fp32", action="store_true", help="save fp32 weights instead of fp16")
    p.add_argument("--save-every", type=float, default=120.0,
                   help="seconds between saves of the EMA weights (and of --state) while training")
    p.add_argument("--state", default=None, help="file for the full training state (model, EMA, optimiser), "
                   "written at every save; with --resume, training continues from it")
    p.add_argument("--resume", action="store_true", help="continue from --state")
    p.add_argument("--skip-dropout", type=float, default=0.0,
                   help="probability that an up block's skip connections are zeroed for a sample with "
                        "t >= --skip-from (independently per block and sample; 0: off)")
    p.add_argument("--skip-swap", type=float, default=0.0,
                   help="probability that an up block's skip inputs are exchanged between the two faces of a "
                        "pair (same t and noise) with t >= --skip-from (0: off)")
    p.add_argument("--swap-pairs", choices=("random", "twins"), default="random",
                   help="--skip-swap's pairs: two unrelated faces, or a face and its twin (one attribute drawn anew)")
    p.add_argument("--skip-from", type=int, default=400, help="timestep from which the skip options act")
    p.add_argument("--no-eval", action="store_true")
    p.add_argument("--eval-only", action="store_true", help="no training: evaluate the weights already in --out")
    p.add_argument("--eval-samples", type=int, default=256)
    p.add_argument("--eval-inversions", type=int, default=64)
    p.add_argument("--eval-seed", type=int, default=None, help="seed of the evaluation's noise and faces "
                   "(default --seed)")
    p.add_argument("--eval-both-clips", action="store_true",
                   help="also sample with the other clip_sample setting (face rate and max TV)")
    args = p.parse_args(argv)
    for flag in ("skip_dropout", "skip_swap"):
        if not 0.0 <= getattr(args, flag) <= 1.0:
            p.error(f"--{flag.replace('_', '-')}: a probability in [0, 1], got {getattr(args, flag)}")
    if args.skip_swap > 0 and args.batch < 2:
        p.error(f"--skip-swap: pairs need --batch of at least 2, got {args.batch}")
    if args.swap_pairs == "twins" and args.skip_swap == 0:
        p.error("--swap-pairs twins: pairs are made only with --skip-swap P (P > 0)")
    return args


def twin_attributes(attrs: list[dict], seed: int) -> list[dict]:
    """Each face's twin: the same face (pose included) with one attribute, uniformly chosen among
    ``toyworld.ATTRIBUTES`` (the hair colour not on a bald face, where it does not show), changed: a categorical
    one to another of its values (uniformly), the smile drawn anew from the prior. Which attribute changes does
    not depend on its value, and the values are independent and uniform there: the twins are distributed as the
    faces are."""
    rng = torch.Generator().manual_seed(seed)
    names = list(toyworld.ATTRIBUTES)
    fresh = toyworld.sample_attributes(len(attrs), seed=seed)
    twins = []
    for a, f in zip(attrs, fresh):
        visible = [k for k in names if not (k == "hair_color" and a["hair"] == "none")]  # bald: no colour shows
        k = visible[int(torch.randint(0, len(visible), (1,), generator=rng))]
        if k == "smile":
            twins.append(dict(a, smile=f["smile"]))
        else:
            values = toyworld.ATTRIBUTES[k]
            shift = int(torch.randint(1, len(values), (1,), generator=rng))
            twins.append(dict(a, **{k: values[(values.index(a[k]) + shift) % len(values)]}))
    return twins


def render_pool(n: int, seed: int, device, twins: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """n faces as uint8 on ``device`` (rendered in chunks), and with ``twins`` each face's twin
    (``twin_attributes``) row for row (else None)."""
    chunks, twin_chunks = [], []
    for start in tqdm(range(0, n, 2048), desc="rendering faces", leave=False):
        attrs = toyworld.sample_attributes(min(2048, n - start), seed=seed * 1_000_003 + start)
        chunks.append(((toyworld.render(attrs, device=device) + 1) * 127.5).round().to(torch.uint8))
        if twins:
            twin = twin_attributes(attrs, seed=seed * 1_000_003 + start + 500_000_000)
            twin_chunks.append(((toyworld.render(twin, device=device) + 1) * 127.5).round().to(torch.uint8))
    return torch.cat(chunks), (torch.cat(twin_chunks) if twins else None)


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}"
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def lr_factor(step: int, elapsed: float, args) -> float:
    """Linear warm-up, then a cosine decay over the run's progress: the larger of the share of --steps
    done and the share of --time-limit spent, so a time-limited run still ends at a low learning rate."""
    progress = min(1.0, max(step / args.steps, elapsed / args.time_limit))
    return min(1.0, (step + 1) / args.warmup) * (0.5 + 0.5 * math.cos(math.pi * progress))


def amp_enabled(device: torch.device, amp: str) -> bool:
    """bf16 autocast: asked for, or (``auto``) on CUDA and on CPUs with AVX-512 BF16."""
    if amp != "auto":
        return amp == "bf16"
    if device.type == "cuda":
        return True
    check = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "")
    return device.type == "cpu" and getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)() \
        and "AVX512" in check()


def loss_weight(alpha: torch.Tensor, prediction: str, gamma: float) -> torch.Tensor:
    """w_t of the module docstring: 1, or min-SNR-γ for ε (÷ SNR) or v (÷ (SNR + 1))."""
    if gamma <= 0:
        return torch.ones_like(alpha)
    snr = alpha / (1 - alpha)
    return snr.clamp(max=gamma) / (snr if prediction == "epsilon" else snr + 1)


def save_weights(ema, out: Path, info: dict, args) -> None:
    """The EMA U-Net, the scheduler and training.json into ``out`` (written again at each save)."""
    from diffusers import DDPMScheduler

    out.mkdir(parents=True, exist_ok=True)
    saved = copy.deepcopy(ema).to("cpu")
    saved = saved if args.fp32 else saved.half()
    saved.save_pretrained(out)
    DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                  clip_sample=args.clip_sample == "on",
                  prediction_type="v_prediction" if args.prediction == "v" else "epsilon").save_pretrained(out)
    (out / "training.json").write_text(json.dumps(info, indent=1))


def init_weights(unet, ema, source: str) -> None:
    """Load ``source`` into the trained and the EMA U-Net: its ``fp32/raw`` and ``fp32/ema`` state dicts when
    present, else its ``save_pretrained`` weights into both."""
    from safetensors.torch import load_file

    src = Path(source)
    raw, avg = src / "fp32" / "raw.safetensors", src / "fp32" / "ema.safetensors"
    if raw.is_file() and avg.is_file():
        unet.load_state_dict(load_file(str(raw)))
        ema.load_state_dict(load_file(str(avg)))
    elif (src / "diffusion_pytorch_model.safetensors").is_file():
        sd = {k: v.float() for k, v in load_file(str(src / "diffusion_pytorch_model.safetensors")).items()}
        unet.load_state_dict(sd)
        ema.load_state_dict(sd)
    else:
        raise SystemExit(f"--init-from: {src} holds neither fp32/raw.safetensors + fp32/ema.safetensors nor "
                         f"diffusion_pytorch_model.safetensors")
    print(f"initialised from {src}", file=sys.stderr)


def add_skip_hooks(unet, args, generator):
    """Forward pre-hooks on the up blocks for --skip-dropout and --skip-swap; returns ``set_t(t)``, called with
    each batch's timesteps before the forward pass (``None``: no hook acts).

    Both act only in training mode and only on samples with t >= --skip-from, independently per up block:
    --skip-dropout zeroes a sample's skip inputs; --skip-swap exchanges them between the two halves of the
    batch, whose samples the training loop pairs (same t, same noise, different faces). A swapped sample sees
    its twin's skips with its own h, and must still predict its own target: the decoder has to take from h
    what tells the twins apart. Sampling and the library always run with every skip in place."""
    state = {"t": None}

    def hook(block, inputs):
        sample, skips, *rest = inputs
        t = state["t"]
        if t is None or not block.training:
            return None
        late = t >= args.skip_from
        if args.skip_swap > 0:
            half = t.shape[0] // 2
            swap = (torch.rand(half, device=t.device, generator=generator) < args.skip_swap) & late[:half]
            order, pair = torch.arange(t.shape[0], device=t.device), torch.arange(half, device=t.device)
            order[:half], order[half:2 * half] = pair + half * swap, pair + half * ~swap
            skips = tuple(x[order] for x in skips)
        if args.skip_dropout > 0:
            keep = (torch.rand(t.shape, device=t.device, generator=generator) >= args.skip_dropout) | ~late
            skips = tuple(x * keep.to(x.dtype).view(-1, 1, 1, 1) for x in skips)
        return (sample, skips, *rest)

    if args.skip_dropout > 0 or args.skip_swap > 0:
        for block in unet.up_blocks:
            block.register_forward_pre_hook(hook)

    def set_t(t):
        state["t"] = t
    return set_t


def train(args):
    from diffusers import UNet2DModel

    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    amp = amp_enabled(device, args.amp)
    print(f"bf16 autocast: {'on' if amp else 'off'}; predicting {args.prediction}; "
          f"min-SNR γ = {args.min_snr or 'off'}", file=sys.stderr)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    config = json.loads(Path(args.config).read_text())
    unet = UNet2DModel.from_config(config).to(device)
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    schedule = ddim.Schedule.linear()
    a_bar = schedule.alphas_cumprod.to(device)
    opt = torch.optim.AdamW(unet.parameters(), lr=args.lr, weight_decay=0.0)
    g = torch.Generator(device=device).manual_seed(args.seed)
    losses, step0, elapsed0 = [], 0, 0.0
    state_file = Path(args.state) if args.state else None
    if args.init_from and not args.resume:
        init_weights(unet, ema, args.init_from)
    if args.resume:
        if state_file is None or not state_file.is_file():
            raise SystemExit(f"--resume: no training state at {state_file} (give --state FILE)")
        st = torch.load(state_file, map_location=device, weights_only=False)
        unet.load_state_dict(st["unet"])
        ema.load_state_dict(st["ema"])
        opt.load_state_dict(st["opt"])
        g.set_state(st["generator"].cpu())
        losses, step0, elapsed0 = st["losses"], st["step"], st["elapsed"]
        print(f"resumed from {state_file} at step {step0} ({elapsed0:.0f} s done)", file=sys.stderr)
    set_t = add_skip_hooks(unet, args, g)
    model = torch.compile(unet) if args.compile else unet
    ema_params, train_params = list(ema.parameters()), list(unet.parameters())

    pool, twin_pool = render_pool(args.pool, args.seed, device, twins=args.swap_pairs == "twins")
    half = args.batch // 2  # --skip-swap's pairs: (i, i + half)
    out = Path(args.out)

    def info(step_done, seconds):
        return {"steps_done": step_done, "args": portable_args(args), "seconds": round(seconds, 1), "machine": machine(),
                "commit": git_commit(), "torch": torch.__version__,
                "final_loss": sum(losses[-50:]) / max(1, len(losses[-50:])),
                "loss_every_100_steps": [round(v, 5) for v in losses[::10]],
                "parameters": sum(p.numel() for p in unet.parameters())}

    def checkpoint(step_done, seconds):
        save_weights(ema, out, info(step_done, seconds), args)
        if state_file is not None:
            state_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = state_file.with_suffix(".tmp")
            torch.save({"unet": unet.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                        "generator": g.get_state(), "losses": losses, "step": step_done, "elapsed": seconds}, tmp)
            tmp.replace(state_file)

    start = time.time() - elapsed0
    last_save = time.time()
    step = step0
    bar = tqdm(range(step0, args.steps), desc="training the toy DDPM", initial=step0, total=args.steps)
    for step in bar:
        elapsed = time.time() - start
        if elapsed > args.time_limit:
            print(f"time limit reached after {step} steps", file=sys.stderr)
            break
        idx = torch.randint(0, pool.shape[0], (args.batch,), device=device, generator=g)
        x0 = pool[idx]
        if twin_pool is not None:  # the second half of the batch: the first half's twins
            x0[half:2 * half] = twin_pool[idx[:half]]
        x0 = x0.float() / 127.5 - 1
        t = torch.randint(0, schedule.num_train_timesteps, (args.batch,), device=device, generator=g)
        noise = torch.randn(x0.shape, device=device, generator=g)
        if args.skip_swap > 0:  # pairs (i, i + half): the same t and noise, different faces (or twins)
            t[half:2 * half], noise[half:2 * half] = t[:half], noise[:half]
        a = a_bar[t].view(-1, 1, 1, 1)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        for group in opt.param_groups:
            group["lr"] = args.lr * lr_factor(step, elapsed, args)
        set_t(t)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            pred = model(x_t, t).sample  # the network's own output: v or ε (a plain UNet2DModel here)
        target = noise if args.prediction == "epsilon" else a.sqrt() * noise - (1 - a).sqrt() * x0
        per_sample = (pred.float() - target).pow(2).mean(dim=(1, 2, 3))
        loss = (loss_weight(a.flatten(), args.prediction, args.min_snr) * per_sample).mean()
        if not torch.isfinite(loss):
            raise RuntimeError(f"loss became {loss.item()} at step {step}; lower --lr (weights saved "
                               f"at the last checkpoint stay as they were)")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, train_params, 1 - decay)
        if step % 10 == 0:
            losses.append(loss.item())
        if step % 50 == 0:
            bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.4f}")
        if time.time() - last_save > args.save_every:
            checkpoint(step + 1, time.time() - start)
            last_save = time.time()
    else:
        step = args.steps
    seconds = time.time() - start
    checkpoint(step, seconds)
    print(f"saved {out} after {step} steps in {seconds:.0f} s, loss {info(step, seconds)['final_loss']:.4f}",
          file=sys.stderr)
    return out


def portable_args(args) -> dict:
    """The arguments as training.json records them: paths relative to the repository when inside it, else the
    last path component (a file shipped in data/ must not name one machine's folders)."""
    repo = Path(__file__).resolve().parents[1]
    out = {}
    for key, value in vars(args).items():
        if isinstance(value, str) and key in ("out", "config", "init_from", "state") and Path(value).is_absolute():
            path = Path(value).resolve()
            value = str(path.relative_to(repo)) if path.is_relative_to(repo) else path.name
        out[key] = value
    return out


def evaluate(folder: Path, args) -> dict:
    """Sample quality by the oracle, and inversion + regeneration LPIPS; writes metrics.json, samples.png."""
    from asyrp_lib.toy.evaluate import sample_quality
    from asyrp_lib.models.perceptual import load_lpips
    from asyrp_lib.front.plotting import save_grid

    device = torch.device(args.device)
    unet, schedule = load_folder(folder, torch_dtype=torch.float32)
    unet = unet.to(device).eval()
    oracle = toyworld.Oracle.load(device=device)
    seed = args.seed if args.eval_seed is None else args.eval_seed
    g = torch.Generator().manual_seed(seed + 12345)
    x_T = torch.randn(args.eval_samples, 3, 64, 64, generator=g)
    refs = oracle.predict(toyworld.render(toyworld.sample_attributes(1000, seed=987_654 + seed), device=device))
    t0 = time.time()
    samples = torch.cat([ddim.sample(unet, x, ddim.timesteps(50), schedule) for x in x_T.split(128)]).clamp(-1, 1)
    sample_seconds = time.time() - t0
    quality = sample_quality(oracle.predict(samples), refs)
    other = {}
    if args.eval_both_clips:  # the same x_T with the other clip_sample setting, for comparison
        flip = not schedule.clip_sample
        alt = torch.cat([ddim.sample(unet, x, ddim.timesteps(50), schedule, clip_sample=flip)
                         for x in x_T.split(128)]).clamp(-1, 1)
        q = sample_quality(oracle.predict(alt), refs)
        other = {f"{'clipped' if flip else 'unclipped'}": {"face_rate": q["face_rate"], "max_tv": q["max_tv"]}}

    lpips = load_lpips("alex", device=device)
    fresh = toyworld.render(toyworld.sample_attributes(args.eval_inversions, seed=555_000 + seed), device=device)
    ts = ddim.timesteps(40)
    inv = {}  # plain DDIM inversion, and the toy profile's way (2 fixed-point refinements, unclipped P_t)
    for name, refine in (("inversion_lpips_plain", 0), ("inversion_lpips_mean", 2)):
        x_T = ddim.invert(unet, fresh, ts, schedule, refine=refine)
        rec = ddim.sample(unet, x_T, ts, schedule, clip_sample=False)
        inv[name] = lpips(rec.clamp(-1, 1), fresh).mean().item()
    clip_pt = clip_on_previews(unet, schedule, device, seed)
    metrics = {"face_rate": quality["face_rate"], "tv": quality["tv"], "max_tv": quality["max_tv"],
               "n_samples": args.eval_samples, "ddim_steps": 50, "clip_sample": schedule.clip_sample, **other,
               "eval_seed": seed, "sampling_seconds": round(sample_seconds, 1),
               **inv, "inversion_refine": 2, "inversion_steps": 40, "n_inversions": args.eval_inversions,
               **clip_pt, "machine": machine()}
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=1))
    save_grid(samples[:64], folder / "samples.png", ncol=8)
    print(json.dumps(metrics, indent=1))
    return metrics


@torch.no_grad()
def clip_on_previews(unet, schedule, device, seed: int, t: int = 500, n: int = 200) -> dict:
    """The toy CLIP's zero-shot smiling-vs-frowning accuracy on P_t previews at ``t``, reached by DDIM
    inversion (40 steps) of fresh smiling and frowning renders; on the clean renders for comparison."""
    from asyrp_lib.models.profiles import load_clip

    clip = load_clip("toy", device=device)
    attrs = [a for a in toyworld.sample_attributes(3 * n, seed=556_000 + seed)
             if toyworld.smile_label(a["smile"]) != "neutral"][:n]
    x0 = toyworld.render(attrs, device=device)
    truth = torch.tensor([toyworld.smile_label(a["smile"]) == "smiling" for a in attrs], device=device)
    ts = [s for s in ddim.timesteps(40) if s <= t]
    if ts[0] != t:
        raise ValueError(f"t={t} is not on the 40-step DDIM grid")
    x_t = torch.cat([ddim.invert(unet, x, ts, schedule, progress=False) for x in x0.split(100)])
    eps = torch.cat([ddim.model_eps(unet, x, t) for x in x_t.split(100)])
    previews = ddim.predicted_x0(x_t, eps, schedule.alpha(t)).clamp(-1, 1)
    text = clip.encode_text(["a frowning face", "a smiling face"])
    acc = lambda images: float(((clip.encode_image(images) @ text.T).argmax(1) == truth.long()).float().mean())
    return {f"clip_smiling_vs_frowning_on_P{t}": acc(previews), "clip_smiling_vs_frowning_on_renders": acc(x0),
            "n_clip_previews": len(attrs)}


if __name__ == "__main__":
    a = parse_args()
    folder = Path(a.out) if a.eval_only else train(a)
    if a.eval_only or not a.no_eval:
        evaluate(folder, a)
