"""Train the toy DDPM: a small diffusers UNet2DModel on rendered toy faces, ε-prediction, EMA weights.

A GPU job (bf16 autocast; about a few minutes on one H100); it also runs on a CPU for smoke tests.

    python scripts/train_toy_ddpm.py --device cuda --steps 12000 --batch 128 --out data/toy_ddpm

Writes to --out: the EMA U-Net (``save_pretrained``, fp16 safetensors unless --fp32), the DDPM
scheduler config, ``training.json`` (arguments, time, machine, losses) and, unless --no-eval,
``metrics.json`` and ``samples.png``: of --eval-samples DDIM-50 samples, the share the oracle reads
as faces and each attribute's total-variation distance to renders; and the mean LPIPS between fresh
renders and their DDIM-40 inversion + regeneration. Training stops early, still saving, when
--time-limit seconds have passed.
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

from asyrp_lib import ddim, toyworld  # noqa: E402
from asyrp_lib.profiles import CONFIG_DIR  # noqa: E402


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
    p.add_argument("--fp32", action="store_true", help="save fp32 weights instead of fp16")
    p.add_argument("--no-eval", action="store_true")
    p.add_argument("--eval-samples", type=int, default=256)
    p.add_argument("--eval-inversions", type=int, default=64)
    return p.parse_args(argv)


def render_pool(n: int, seed: int, device) -> torch.Tensor:
    """n faces as uint8 on ``device`` (rendered in chunks)."""
    chunks = []
    for start in tqdm(range(0, n, 2048), desc="rendering faces", leave=False):
        attrs = toyworld.sample_attributes(min(2048, n - start), seed=seed * 1_000_003 + start)
        x = toyworld.render(attrs, device=device)
        chunks.append(((x + 1) * 127.5).round().to(torch.uint8))
    return torch.cat(chunks)


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


def train(args):
    from diffusers import DDPMScheduler, UNet2DModel

    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    config = json.loads(Path(args.config).read_text())
    unet = UNet2DModel.from_config(config).to(device)
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    schedule = ddim.Schedule.linear()
    a_bar = schedule.alphas_cumprod.to(device)
    opt = torch.optim.AdamW(unet.parameters(), lr=args.lr, weight_decay=0.0)
    lr_at = lambda s: args.lr * min(1.0, (s + 1) / args.warmup) * (0.5 + 0.5 * math.cos(math.pi * s / args.steps))
    model = torch.compile(unet) if args.compile else unet

    pool = render_pool(args.pool, args.seed, device)
    g = torch.Generator(device=device).manual_seed(args.seed)
    losses, start, step = [], time.time(), 0
    bar = tqdm(range(args.steps), desc="training the toy DDPM")
    for step in bar:
        idx = torch.randint(0, pool.shape[0], (args.batch,), device=device, generator=g)
        x0 = pool[idx].float() / 127.5 - 1
        t = torch.randint(0, schedule.num_train_timesteps, (args.batch,), device=device, generator=g)
        noise = torch.randn(x0.shape, device=device, generator=g)
        a = a_bar[t].view(-1, 1, 1, 1)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            pred = model(x_t, t).sample
        loss = torch.nn.functional.mse_loss(pred.float(), noise)
        if not torch.isfinite(loss):
            raise RuntimeError(f"loss became {loss.item()} at step {step}; lower --lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), unet.parameters()):
                pe.lerp_(p, 1 - decay)
        losses.append(loss.item()) if step % 10 == 0 else None
        if step % 50 == 0:
            bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.4f}")
        if time.time() - start > args.time_limit:
            print(f"time limit reached after {step + 1} steps", file=sys.stderr)
            break
    seconds = time.time() - start

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    saved = copy.deepcopy(ema).to("cpu")
    if not args.fp32:
        saved = saved.half()
    saved.save_pretrained(out)
    DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                  clip_sample=False).save_pretrained(out)
    info = {"steps_done": step + 1, "args": vars(args), "seconds": round(seconds, 1), "machine": machine(),
            "commit": git_commit(), "torch": torch.__version__, "final_loss": sum(losses[-50:]) / len(losses[-50:]),
            "loss_curve_every_10_steps": [round(v, 5) for v in losses[::10]],
            "parameters": sum(p.numel() for p in unet.parameters())}
    (out / "training.json").write_text(json.dumps(info, indent=1))
    print(f"saved {out} after {step + 1} steps in {seconds:.0f} s, loss {info['final_loss']:.4f}", file=sys.stderr)
    return out


def evaluate(folder: Path, args) -> dict:
    """Sample quality by the oracle, and inversion + regeneration LPIPS; writes metrics.json, samples.png."""
    from diffusers import UNet2DModel

    from asyrp_lib.evaluate import sample_quality
    from asyrp_lib.perceptual import load_lpips
    from asyrp_lib.plotting import save_grid

    device = torch.device(args.device)
    unet = UNet2DModel.from_pretrained(str(folder), torch_dtype=torch.float32).to(device).eval()
    schedule = ddim.Schedule.linear()
    oracle = toyworld.Oracle.load(device=device)
    g = torch.Generator().manual_seed(args.seed + 12345)
    x_T = torch.randn(args.eval_samples, 3, 64, 64, generator=g)
    t0 = time.time()
    samples = torch.cat([ddim.sample(unet, x, ddim.timesteps(50), schedule) for x in x_T.split(128)])
    sample_seconds = time.time() - t0
    refs = toyworld.render(toyworld.sample_attributes(1000, seed=987_654 + args.seed), device=device)
    quality = sample_quality(oracle.predict(samples), oracle.predict(refs))

    lpips = load_lpips("alex", device=device)
    fresh = toyworld.render(toyworld.sample_attributes(args.eval_inversions, seed=555_000 + args.seed), device=device)
    ts = ddim.timesteps(40)
    rec = ddim.sample(unet, ddim.invert(unet, fresh, ts, schedule), ts, schedule)
    inv = lpips(rec.clamp(-1, 1), fresh).mean().item()
    metrics = {"face_rate": quality["face_rate"], "tv": quality["tv"], "max_tv": quality["max_tv"],
               "n_samples": args.eval_samples, "ddim_steps": 50, "sampling_seconds": round(sample_seconds, 1),
               "inversion_lpips_mean": inv, "inversion_steps": 40, "n_inversions": args.eval_inversions,
               "machine": machine()}
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=1))
    save_grid(samples[:64], folder / "samples.png", ncol=8)
    print(json.dumps(metrics, indent=1))
    return metrics


if __name__ == "__main__":
    a = parse_args()
    folder = train(a)
    if not a.no_eval:
        evaluate(folder, a)
