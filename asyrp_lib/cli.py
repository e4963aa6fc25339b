"""The ``asyrp`` command line (also ``python -m asyrp_lib``)."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

__all__ = ["main", "build_parser"]


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default="toy",
                   help="model profile: toy (offline, default), celebahq (model hub, GPU), tiny (random, tests), "
                        "or a hub id / local folder of a UNet2DModel")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")


def _positive_int(value: str) -> int:
    try:
        v = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asyrp", description="Semantic image editing in the h-space of "
                                     "diffusion models (Asyrp): the asyrp-course command line.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("sample", help="DDIM samples from the profile's diffusion model, as a PNG grid")
    _common(p)
    p.add_argument("--output", default="samples.png", help="PNG file to write (default: samples.png)")
    p.add_argument("--n", type=_positive_int, default=8, help="number of samples (default 8)")
    p.add_argument("--steps", type=_positive_int, default=None, help="DDIM steps (default: the profile's)")
    p.add_argument("--eta", type=float, default=0.0, help="η in [0, 1]: 0 deterministic DDIM, 1 DDPM-like")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_sample)
    return parser


def _cmd_sample(args) -> int:
    import torch

    from . import ddim
    from .plotting import save_grid
    from .profiles import load_profile

    out = Path(args.output)
    if out.suffix.lower() != ".png":
        raise ValueError(f"--output: expected a .png file name, got {args.output!r}")
    if not 0.0 <= args.eta <= 1.0:
        raise ValueError(f"--eta: expected a value in [0, 1], got {args.eta}")
    prof = load_profile(args.profile, device=args.device)
    print(prof, file=sys.stderr)
    steps = args.steps or prof.default_steps
    if steps > prof.schedule.num_train_timesteps:
        raise ValueError(f"--steps: expected at most {prof.schedule.num_train_timesteps}, got {steps}")
    g = torch.Generator().manual_seed(args.seed)
    x_T = torch.randn(args.n, 3, prof.image_size, prof.image_size, generator=g)
    start = time.perf_counter()
    x0 = ddim.sample(prof.unet, x_T, ddim.timesteps(steps), prof.schedule, eta=args.eta,
                     generator=torch.Generator().manual_seed(args.seed + 1))
    save_grid(x0, out, ncol=min(args.n, 8), scale=max(1, 128 // prof.image_size))
    print(f"wrote {out} ({args.n} samples, {steps} DDIM steps, η={args.eta}, "
          f"{time.perf_counter() - start:.1f} s)", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, OSError) as exc:
        print(f"asyrp {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"asyrp {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
