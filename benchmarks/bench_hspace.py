"""How much the shared-encoder edited pass saves (ARCHITECTURE.md §6), on the celebahq U-Net architecture.

Times, with random weights of the real config: one full forward; the encoder + mid block alone; the
edited pair ε(x_t | h + Δh), ε(x_t) from one encoder pass and one batched decoder pass; and the same
pair as two full forwards. Prints a table and writes JSON.

    python benchmarks/bench_hspace.py --size 256 --batch 4 --device cuda [--bf16] [--channels-last]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asyrp_lib.core.hspace import HSpaceUNet  # noqa: E402
from asyrp_lib.models.profiles import CONFIG_DIR  # noqa: E402


def timed(fn, device, repeat):
    fn()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        out.append(time.perf_counter() - start)
    return statistics.median(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    from diffusers import UNet2DModel

    device = torch.device(args.device)
    unet = UNet2DModel.from_config(json.loads((CONFIG_DIR / "celebahq_unet.json").read_text())).to(device).eval()
    if args.channels_last:
        unet = unet.to(memory_format=torch.channels_last)
    hs = HSpaceUNet(unet)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    t = torch.full((args.batch,), 500, device=device)
    with torch.no_grad():
        delta = torch.randn_like(hs.encode(x, t).h) * 0.1
    ctx = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if args.bf16 else torch.no_grad

    def run(fn):
        def go():
            with torch.no_grad(), ctx():
                fn()
        return timed(go, device, args.repeat)

    r = {
        "full forward": run(lambda: unet(x, t).sample),
        "encoder + mid block": run(lambda: hs.encode(x, t)),
        "edited pair, shared encoder": run(lambda: hs.eps(x, t, delta_h=delta)),
        "edited pair, two forwards": run(lambda: (unet(x, t).sample, unet(x, t).sample)),
    }
    info = {"device": torch.cuda.get_device_name(0) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads",
            "size": args.size, "batch": args.batch, "bf16": args.bf16, "channels_last": args.channels_last,
            "seconds": r, "encoder_share": r["encoder + mid block"] / r["full forward"],
            "saving": 1 - r["edited pair, shared encoder"] / r["edited pair, two forwards"]}
    print(f"celebahq U-Net, {args.batch}×3×{args.size}×{args.size}, {info['device']}, bf16={args.bf16}")
    for k, v in r.items():
        print(f"  {k:30s} {v * 1000:9.1f} ms")
    print(f"  encoder + mid block share of a forward: {info['encoder_share']:.0%}; "
          f"shared-encoder pair saves {info['saving']:.0%} over two forwards")
    if args.json:
        Path(args.json).write_text(json.dumps(info, indent=1))


if __name__ == "__main__":
    main()
