"""Keep committed notebooks under 1 MB: re-encode large PNG outputs as 256-colour palette PNGs.

    python scripts/shrink_notebook_images.py notebooks/*.ipynb

Figures of noisy images (x_t at large t) compress badly as true-colour PNG; a palette of 256 colours keeps
them visually the same at a fraction of the size. Only outputs above --min-kb are touched; the notebook's
cells, texts and other outputs are left as they are. Prints each notebook's size before and after.
"""
from __future__ import annotations

import argparse
import base64
import io
import json
from pathlib import Path

from PIL import Image


def shrink_png(data: str) -> str:
    img = Image.open(io.BytesIO(base64.b64decode(data)))
    out = io.BytesIO()
    img.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(out, format="PNG", optimize=True)
    new = base64.b64encode(out.getvalue()).decode()
    return new if len(new) < len(data) else data


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("notebooks", nargs="+")
    p.add_argument("--min-kb", type=float, default=60.0, help="re-encode PNG outputs larger than this (default 60)")
    args = p.parse_args(argv)
    for path in map(Path, args.notebooks):
        before = path.stat().st_size
        nb = json.loads(path.read_text(encoding="utf-8"))
        for cell in nb["cells"]:
            for out in cell.get("outputs", []):
                png = out.get("data", {}).get("image/png")
                if isinstance(png, str) and len(png) > args.min_kb * 1024:
                    out["data"]["image/png"] = shrink_png(png)
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"{path}: {before / 1e6:.2f} MB -> {path.stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
