"""The reference implementation's way against the library's, in one run on one machine (issue 15).

Two jobs, inversion included in both:

  (a) one edit of N images (``--n-edit``) with a direction f_t (random weights), t ≥ t_edit asymmetric;
  (b) one f_t training epoch over M images (``--m-train``), the directional CLIP + L1 loss of the library.

Three ways of doing them:

  reference  fp32, one image at a time, two full U-Net passes per asymmetric step (ε(x_t | h + Δh) and
             ε(x_t)) and, in training, a third for the unedited trajectory; no inversion cache; plain
             inversion (no refinement), as the reference implementation does.
  library    AsyrpEditor / train_direction with the speed options given here (--batch, --train-batch,
             --precision, --channels-last, --compile): batched, one shared encoder pass per step
             (HSpaceUNet.eps), inversions cached; the edit is timed on new images and again on the same
             ones (inversions from the cache). A first run on other images (one batch) is timed apart:
             with --compile it holds the compilation ("compile_s" = that run minus the same work later).
  defaults   the library at its default settings (fp32, default batch sizes, the edit with its reconstruction
             as AsyrpEditor.edit makes it by default) on one batch: its s/img and the peak GPU memory
             (torch.cuda.max_memory_allocated) of editing and of training.

The reference way works on one image at a time, so its seconds per image do not depend on how many images
it gets: it runs ``--n-ref`` / ``--m-ref`` images, and its epoch over M images is reported as that time per
image × M. Also measured: the reconstruction (inversion, then generation without an edit) and the edit in
each precision, as mean |difference| against fp32 and against the input images.

Model (``--profile celebahq``, the default): the celebahq U-Net architecture (asyrp_lib/configs/
celebahq_unet.json, 113.7 M parameters, scheduler celebahq_scheduler.json) and a CLIP of ViT-B/16's
architecture (configs/clip_vit_b16.json), both with random weights, built offline: speed does not depend
on the weights. ``--profile tiny`` (or any name ``load_profile`` takes) uses that profile instead.
Prints a table, writes the numbers with ``--json FILE`` (updated after each part, so a run cut short keeps
what it measured), and with ``--readme`` adds a row to benchmarks/README.md.

    python benchmarks/bench_gpu.py --device cuda --batch 32 --precision bf16 --channels-last --compile \\
        --json gpu.json --readme
    python benchmarks/bench_gpu.py --device cpu --quick      # tiny profile, 32×32, 4 steps: the unit test
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from asyrp_lib.core import ddim  # noqa: E402
from asyrp_lib._utils import check_int, resolve_device  # noqa: E402
from asyrp_lib.models.clip import DirectionalCLIPLoss  # noqa: E402
from asyrp_lib.core.delta_net import DeltaNet  # noqa: E402
from asyrp_lib.core.hspace import HSpaceUNet  # noqa: E402
from asyrp_lib.core.loss import loss_step  # noqa: E402
from asyrp_lib.core.pipeline import AsyrpEditor, default_batch_size  # noqa: E402
from asyrp_lib.core.process import ProcessStep  # noqa: E402
from asyrp_lib.models.profiles import CONFIG_DIR, PROFILES, Profile, load_profile  # noqa: E402
from asyrp_lib.core.train import TrainConfig, train_direction  # noqa: E402

README = ROOT / "benchmarks" / "README.md"
#: The header of the results table that ``--readme`` adds rows to.
TABLE_HEADER = ("| date | device | setting | edit: reference | edit: library (cached) | ratio | epoch over M: "
                "reference | epoch: library | ratio | peak GB edit / train (defaults) | bf16 vs fp32 |")
QUICK = {"profile": "tiny", "steps": 4, "n_edit": 4, "m_train": 4, "n_ref": 2, "m_ref": 1, "batch": 2,
         "train_batch": 2}
PROMPTS = ("face", "smiling face")


# --------------------------------------------------------------------------------------------
# Machine, model, images
# --------------------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device):
    """(fn(), seconds), the device synchronised before and after."""
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - start


def peak_memory(fn, device: torch.device):
    """(fn(), seconds, peak GB allocated by torch on the GPU during it, or None on a CPU)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    out, seconds = timed(fn, device)
    peak = torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None
    return out, seconds, peak


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    n = torch.get_num_threads()
    return f"CPU ({platform.machine()}), {n} thread{'s' if n != 1 else ''}"


def full_size_clip(device: torch.device):
    """A CLIP of ViT-B/16's architecture (configs/clip_vit_b16.json) with random weights and a small real
    tokenizer whose special-token ids the text config is given."""
    from transformers import CLIPConfig, CLIPModel

    from asyrp_lib.models.clip import CLIPEncoder
    from asyrp_lib.models.tokenizer_build import build_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        tok = build_tokenizer(("a", "of", "photo", "face", "smiling"), tmp)
    config = CLIPConfig.from_pretrained(CONFIG_DIR / "clip_vit_b16.json")
    tc = config.text_config
    tc.vocab_size, tc.bos_token_id, tc.eos_token_id, tc.pad_token_id = (len(tok), tok.bos_token_id,
                                                                        tok.eos_token_id, tok.pad_token_id)
    torch.manual_seed(0)
    return CLIPEncoder(CLIPModel(config).to(device), tok, name="random ViT-B/16 CLIP")


def celebahq_standin(device: torch.device, size: int) -> Profile:
    """The celebahq profile's architecture with random weights (no hub): U-Net, scheduler and CLIP."""
    from diffusers import DDPMScheduler, UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel.from_config(json.loads((CONFIG_DIR / "celebahq_unet.json").read_text()))
    scheduler = DDPMScheduler.from_config(json.loads((CONFIG_DIR / "celebahq_scheduler.json").read_text()))
    spec = PROFILES["celebahq"]
    return Profile(name="celebahq", unet=unet.eval().requires_grad_(False).to(device),
                   schedule=ddim.Schedule.from_scheduler(scheduler), image_size=size,
                   default_steps=spec.default_steps, prompt_pairs=[PROMPTS], device=device,
                   model_id="celebahq architecture, random weights", invert_refine=spec.invert_refine,
                   _clip_loader=lambda: full_size_clip(device))


def make_profile(name: str, device: torch.device, size: int | None) -> Profile:
    if name == "celebahq":
        return celebahq_standin(device, size or PROFILES["celebahq"].image_size)
    profile = load_profile(name, device=device)
    if size:
        profile.image_size = size
    return profile


def smooth_images(n: int, size: int, seed: int, device: torch.device) -> torch.Tensor:
    """``n`` smooth random images in [-1, 1] (their content does not change the timings)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, max(2, size // 4), max(2, size // 4), generator=g)
    return torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False).tanh().to(device)


def direction(h_shape, device: torch.device) -> DeltaNet:
    """A DeltaNet with random, non-zero output weights (so that the edit changes the images)."""
    torch.manual_seed(1)
    net = DeltaNet(h_shape)
    torch.nn.init.normal_(net.conv_out.weight, std=0.02)
    return net.to(device).eval()


def plain_layout(profile: Profile) -> None:
    """Undo ``channels_last`` on the shared U-Net, so that every way starts from the same weights' layout."""
    profile.unet.to(memory_format=torch.contiguous_format)


# --------------------------------------------------------------------------------------------
# The reference way
# --------------------------------------------------------------------------------------------
def _edit_pass(hs: HSpaceUNet, x: torch.Tensor, t: int, net) -> torch.Tensor:
    """ε(x_t | h + Δh): one full U-Net pass with f_t applied at its bottleneck."""
    enc = hs.encode(x, t)
    return hs.decode(enc, enc.h + net(enc.h, enc.timesteps))


@torch.no_grad()
def reference_edit(profile: Profile, images: torch.Tensor, net, s: dict) -> torch.Tensor:
    """One image at a time, fp32, no cache: inversion, then two full passes per asymmetric step."""
    hs, sched = HSpaceUNet(profile.unet), profile.schedule
    out = []
    for x0 in images.split(1):
        x = ddim.invert(profile.unet, x0, s["timesteps"], sched, progress=False)
        for t, t_prev in zip(s["timesteps"], ddim.previous_timesteps(s["timesteps"])):
            a, a_prev = sched.alpha(t), sched.alpha(t_prev)
            if t >= s["t_edit"]:
                eps_edit, eps = _edit_pass(hs, x, t, net), hs(x, t)
                x = ddim.ddim_step(x, eps_edit, a, a_prev, eps_direction=eps).x_prev
            else:
                x = ddim.ddim_step(x, hs(x, t), a, a_prev).x_prev
        out.append(x.clamp(-1, 1))
    return torch.cat(out)


def reference_train(profile: Profile, images: torch.Tensor, s: dict) -> int:
    """One epoch at batch 1, fp32, no cache: per image, inversion, then per edit step one full pass with
    f_t (with its graph), one without it and one on the unedited trajectory; one Adam step. Returns steps."""
    hs, sched, cfg = HSpaceUNet(profile.unet), profile.schedule, TrainConfig(*PROMPTS).resolved(profile)
    torch.manual_seed(0)
    net = DeltaNet(hs.h_shape(s["size"])).to(hs.device).train()
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    clip_loss = DirectionalCLIPLoss(profile.clip, *PROMPTS)
    steps = [(t, tp) for t, tp in zip(s["timesteps"], ddim.previous_timesteps(s["timesteps"])) if t >= s["t_edit"]]
    for x0 in images.split(1):
        x = x_rec = ddim.invert(profile.unet, x0, s["timesteps"], sched, progress=False)
        with torch.no_grad():
            src = clip_loss.encoder.encode_image(x0)
        for j, (t, t_prev) in enumerate(steps):
            eps_edit = _edit_pass(hs, x, t, net)
            with torch.no_grad():
                eps, eps_rec = hs(x, t), hs(x_rec, t)
            step = ProcessStep(index=j, t=t, t_prev=t_prev, phase="edit", n=1, x_t=torch.cat([x, x_rec]),
                               eps=torch.cat([eps, eps_rec]), eps_edit=eps_edit, alpha_t=sched.alpha(t),
                               alpha_prev=sched.alpha(t_prev))
            loss_step(step, cfg.loss, clip_loss, src, opt, list(net.parameters()))
            with torch.no_grad():
                x = ddim.ddim_step(x, eps_edit.detach(), step.alpha_t, step.alpha_prev, eps_direction=eps).x_prev
                x_rec = ddim.ddim_step(x_rec, eps_rec, step.alpha_t, step.alpha_prev).x_prev
    return len(steps) * images.shape[0]


# --------------------------------------------------------------------------------------------
# The parts of the benchmark
# --------------------------------------------------------------------------------------------
def editor(profile: Profile, s: dict, fast: bool, **kw) -> AsyrpEditor:
    opts = {"batch_size": s["batch"], "precision": s["precision"], "channels_last": s["channels_last"],
            "compile": s["compile"]} if fast else {}
    return AsyrpEditor(profile, n_steps=s["steps"], t_edit=s["t_edit"], t_boost=s["t_boost"], progress=False,
                       refine=s["refine"], **{**opts, **kw})


def part_precision(profile: Profile, s: dict, net) -> dict:
    """Reconstruction and edit in each precision: mean |·| against fp32 and against the input."""
    x0 = smooth_images(min(s["n_edit"], 4), s["size"], 7, s["device"])
    out = {}
    for precision in ("fp32", "bf16"):
        ed = editor(profile, s, False, precision=precision)
        recon = ed.edit(x0, None).edited
        edited = ed.edit(x0, [(net, 1.0)], reconstruct=False).edited
        out[precision] = {"recon": recon, "edited": edited}
    ref = out["fp32"]
    return {p: {"reconstruction_vs_input": float((o["recon"] - x0).abs().mean()),
                "reconstruction_vs_fp32": float((o["recon"] - ref["recon"]).abs().mean()),
                "edit_vs_fp32": float((o["edited"] - ref["edited"]).abs().mean()),
                "edit_vs_fp32_max": float((o["edited"] - ref["edited"]).abs().max())}
            for p, o in out.items()}


def part_edit(profile: Profile, s: dict, net) -> dict:
    dev, n = s["device"], s["n_edit"]
    x_ref = smooth_images(s["n_ref"], s["size"], 1, dev)
    ref, t_ref = timed(lambda: reference_edit(profile, x_ref, net, s), dev)
    ed0 = editor(profile, s, False)
    x_def = smooth_images(min(n, ed0.batch_size), s["size"], 2, dev)
    _, t_def, peak_def = peak_memory(lambda: ed0.edit(x_def, [(net, 1.0)]), dev)
    ed = editor(profile, s, True)
    x_warm = smooth_images(min(n, ed.batch_size), s["size"], 3, dev)
    _, t_warm = timed(lambda: ed.edit(x_warm, [(net, 1.0)], reconstruct=False), dev)
    x = smooth_images(n, s["size"], 4, dev)
    res, t_lib, peak_lib = peak_memory(lambda: ed.edit(x, [(net, 1.0)], reconstruct=False), dev)
    _, t_cached = timed(lambda: ed.edit(x, [(net, 1.0)], reconstruct=False), dev)
    plain_layout(profile)
    per = {"reference": t_ref / x_ref.shape[0], "defaults": t_def / x_def.shape[0], "library": t_lib / n,
           "library_cached": t_cached / n}
    return {"s_per_img": per, "ratio": per["reference"] / per["library"],
            "ratio_cached": per["reference"] / per["library_cached"],
            "warmup_s": t_warm, "compile_s": max(0.0, t_warm - per["library"] * x_warm.shape[0]),
            "peak_gb": {"defaults": peak_def, "library": peak_lib},
            "shape": {"reference": list(ref.shape[1:]), "library": list(res.edited.shape[1:])},
            "images": {"reference": x_ref.shape[0], "defaults": x_def.shape[0], "library": n}}


def _train_library(profile: Profile, s: dict, images: torch.Tensor, work: Path, name: str, fast: bool):
    opts = {"batch_size": s["train_batch"], "precision": s["precision"], "channels_last": s["channels_last"],
            "compile": s["compile"]} if fast else {}
    # training alone is timed: the strength a recipe may choose afterwards (asyrp_lib.core.strength) is left out
    cfg = TrainConfig(*PROMPTS, n_steps=s["steps"], t_edit=s["t_edit"], t_boost=s["t_boost"], strength_share=0.0,
                      **opts)
    return train_direction(profile, cfg, work / name, images=images, progress=False, cache_dir=work / f"cache-{name}")


def part_train(profile: Profile, s: dict) -> dict:
    dev, m = s["device"], s["m_train"]
    profile.clip  # loaded before any timing  # noqa: B018
    x_ref = smooth_images(s["m_ref"], s["size"], 11, dev)
    ref_steps, t_ref = timed(lambda: reference_train(profile, x_ref, s), dev)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        x_def = smooth_images(min(m, TrainConfig().batch_size), s["size"], 12, dev)
        _, t_def, peak_def = peak_memory(lambda: _train_library(profile, s, x_def, work, "defaults", False), dev)
        x_warm = smooth_images(min(m, s["train_batch"]), s["size"], 13, dev)
        _, t_warm = timed(lambda: _train_library(profile, s, x_warm, work, "warmup", True), dev)
        x = smooth_images(m, s["size"], 14, dev)
        res, t_lib, peak_lib = peak_memory(lambda: _train_library(profile, s, x, work, "library", True), dev)
    plain_layout(profile)
    per = {"reference": t_ref / x_ref.shape[0], "defaults": t_def / x_def.shape[0], "library": t_lib / m}
    return {"s_per_img": per, "epoch_s": {"reference": per["reference"] * m, "library": t_lib},
            "ratio": per["reference"] / per["library"], "warmup_s": t_warm,
            "compile_s": max(0.0, t_warm - per["library"] * x_warm.shape[0]),
            "peak_gb": {"defaults": peak_def, "library": peak_lib},
            "optimizer_steps": {"reference": ref_steps, "library": res.steps},
            "images": {"reference": x_ref.shape[0], "defaults": x_def.shape[0], "library": m}}


# --------------------------------------------------------------------------------------------
# Arguments, report
# --------------------------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="celebahq", help="celebahq (random weights, offline; default), tiny, …")
    p.add_argument("--size", type=int, default=None, help="image side (default: the profile's)")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when there is one)")
    p.add_argument("--steps", type=int, default=40, help="DDIM steps of inversion and generation (40)")
    p.add_argument("--t-edit", type=int, default=None, help="default: half of the steps asymmetric")
    p.add_argument("--t-boost", type=int, default=0)
    p.add_argument("--refine", type=int, default=None, help="library inversion refinement (default: profile's)")
    p.add_argument("--n-edit", type=int, default=32, help="N: images of the library's edit (32)")
    p.add_argument("--m-train", type=int, default=100, help="M: images of the library's epoch (100)")
    p.add_argument("--n-ref", type=int, default=2, help="images the reference way edits (2)")
    p.add_argument("--m-ref", type=int, default=1, help="images the reference way trains on (1)")
    p.add_argument("--batch", type=int, default=None, help="library edit batch (default: the editor's)")
    p.add_argument("--train-batch", type=int, default=None, help="library training batch (default: 4)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile the U-Net's halves")
    p.add_argument("--parts", default="precision,edit,train", help="which parts to run (comma-separated)")
    p.add_argument("--quick", action="store_true", help="the reduced run: " + ", ".join(
        f"{k}={v}" for k, v in QUICK.items()) + " (unless given)")
    p.add_argument("--json", default=None, help="write the results here (after each part)")
    p.add_argument("--readme", nargs="?", const=str(README), default=None,
                   help=f"add a row to this README's bench_gpu table (default {README.relative_to(ROOT)})")
    args = p.parse_args(argv)
    defaults = {a.dest: a.default for a in p._actions}
    if args.quick:
        for k, v in QUICK.items():
            if getattr(args, k) == defaults[k]:
                setattr(args, k, v)
    return args


def settings(args, profile: Profile, device: torch.device) -> dict:
    for name in ("steps", "n_edit", "m_train", "n_ref", "m_ref"):
        check_int(getattr(args, name), "--" + name.replace("_", "-"))
    ts = ddim.timesteps(args.steps, profile.schedule.num_train_timesteps)
    size = int(profile.image_size)
    batch = args.batch or default_batch_size(size)
    return {"device": device, "size": size, "steps": args.steps, "timesteps": ts,
            "t_edit": args.t_edit if args.t_edit is not None else ts[max(0, args.steps // 2 - 1)],
            "t_boost": args.t_boost, "n_edit": args.n_edit, "m_train": args.m_train, "n_ref": args.n_ref,
            "m_ref": args.m_ref, "batch": batch, "train_batch": args.train_batch or TrainConfig().batch_size,
            "precision": args.precision, "channels_last": args.channels_last, "compile": args.compile,
            "refine": args.refine if args.refine is not None else int(getattr(profile, "invert_refine", 0))}


def header(s: dict, profile: Profile) -> dict:
    keep = ("size", "steps", "t_edit", "t_boost", "n_edit", "m_train", "n_ref", "m_ref", "batch", "train_batch",
            "precision", "channels_last", "compile", "refine")
    return {"date": datetime.date.today().isoformat(), "device": device_name(s["device"]),
            "torch": torch.__version__, "profile": profile.name, "model_id": profile.model_id,
            "parameters_m": sum(p.numel() for p in profile.unet.parameters()) / 1e6,
            "asymmetric_steps": sum(t >= s["t_edit"] for t in s["timesteps"]), **{k: s[k] for k in keep}}


def _fmt(x, unit="", digits=3) -> str:
    return "–" if x is None else f"{x:.{digits}g}{unit}"


def report(r: dict) -> str:
    """The printed summary."""
    lines = [(f"{r['profile']} ({r['parameters_m']:.1f} M parameters), {r['size']}², {r['steps']} steps "
              f"({r['asymmetric_steps']} asymmetric), {r['device']}, torch {r['torch']}; library: batch "
              f"{r['batch']} / {r['train_batch']}, {r['precision']}, channels_last={r['channels_last']}, "
              f"compile={r['compile']}, refine={r['refine']}")]
    for name in ("edit", "train"):
        if name in r:
            e = r[name]
            per = "  ".join(f"{k} {_fmt(v, ' s/img')}" for k, v in e["s_per_img"].items())
            lines.append(f"{name:6s} {per}")
            lines.append(f"       reference / library = {e['ratio']:.1f}×"
                         + (f" (cached inversions: {e['ratio_cached']:.1f}×)" if "ratio_cached" in e else "")
                         + f"; first run {e['warmup_s']:.1f} s ({e['compile_s']:.1f} s more than later: "
                         f"compilation, warm-up); peak GPU memory defaults {_fmt(e['peak_gb']['defaults'], ' GB')}, "
                         f"library {_fmt(e['peak_gb']['library'], ' GB')}")
            if name == "train":
                lines.append(f"       epoch over {r['m_train']} images: reference {e['epoch_s']['reference']:.1f} s "
                             f"(from {e['images']['reference']} image(s)), library {e['epoch_s']['library']:.1f} s")
    for p, v in r.get("precision_error", {}).items():
        lines.append(f"{p}   reconstruction: vs input {v['reconstruction_vs_input']:.4f}, vs fp32 "
                     f"{v['reconstruction_vs_fp32']:.4f}; edit vs fp32 {v['edit_vs_fp32']:.4f} "
                     f"(max {v['edit_vs_fp32_max']:.3f})  [mean |difference|, images in [-1, 1]]")
    return "\n".join(lines)


def readme_row(r: dict) -> str:
    e, t, pe = r.get("edit"), r.get("train"), r.get("precision_error", {})
    setting = (f"{r['profile']} {r['size']}², {r['steps']} steps, N={r['n_edit']}, M={r['m_train']}, batch "
               f"{r['batch']}/{r['train_batch']}, {r['precision']}{', channels-last' if r['channels_last'] else ''}"
               f"{', compile' if r['compile'] else ''}, refine {r['refine']}")
    cells = [r["date"], r["device"], setting]
    cells += ([f"{e['s_per_img']['reference']:.3g} s/img",
               f"{e['s_per_img']['library']:.3g} ({e['s_per_img']['library_cached']:.3g}) s/img",
               f"{e['ratio']:.1f}× ({e['ratio_cached']:.1f}×)"] if e else ["–"] * 3)
    cells += ([f"{t['epoch_s']['reference']:.4g} s", f"{t['epoch_s']['library']:.4g} s", f"{t['ratio']:.1f}×"]
              if t else ["–"] * 3)
    cells.append(f"{_fmt(e and e['peak_gb']['defaults'])} / {_fmt(t and t['peak_gb']['defaults'])}")
    cells.append(f"recon {pe['bf16']['reconstruction_vs_fp32']:.2g}, edit {pe['bf16']['edit_vs_fp32']:.2g}"
                 if "bf16" in pe else "–")
    return "| " + " | ".join(cells) + " |"


def add_readme_row(path: Path, row: str) -> None:
    """Insert ``row`` after the last row of the table under :data:`TABLE_HEADER` in ``path``."""
    lines = path.read_text().splitlines()
    if TABLE_HEADER not in lines:
        raise SystemExit(f"--readme: {path} has no bench_gpu table (a line equal to bench_gpu.TABLE_HEADER)")
    end = lines.index(TABLE_HEADER) + 1
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    lines.insert(end, row)
    path.write_text("\n".join(lines) + "\n")


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = resolve_device(args.device)
    profile = make_profile(args.profile, device, args.size)
    s = settings(args, profile, device)
    r = header(s, profile)
    net = direction(HSpaceUNet(profile.unet).h_shape(s["size"]), device)
    with torch.no_grad():  # start-up costs (CUDA context, first kernels) before any timing
        profile.unet(smooth_images(1, s["size"], 0, device), torch.tensor([1], device=device))
    parts = {"precision": ("precision_error", part_precision, (net,)), "edit": ("edit", part_edit, (net,)),
             "train": ("train", part_train, ())}
    for name in [p.strip() for p in args.parts.split(",") if p.strip()]:
        if name not in parts:
            raise SystemExit(f"--parts: unknown part {name!r}; expected some of {', '.join(parts)}")
        key, fn, extra = parts[name]
        cpu = time.process_time()
        r[key], seconds = timed(lambda fn=fn, extra=extra: fn(profile, s, *extra), device)
        cpu = time.process_time() - cpu  # far below the wall time: the machine was busy with other work
        r.setdefault("part_seconds", {})[name] = {"wall": seconds, "process_cpu": cpu}
        print(f"[bench_gpu] {name}: {seconds:.1f} s ({cpu:.1f} s of CPU time in this process)", file=sys.stderr)
        if args.json:
            Path(args.json).write_text(json.dumps(r, indent=1))
    print(report(r))
    if args.readme:
        add_readme_row(Path(args.readme), readme_row(r))
    return r


if __name__ == "__main__":
    main()
