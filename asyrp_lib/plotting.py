"""Figures: image grids and small multi-panel plots. No maths lives here."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

__all__ = ["to_uint8", "to_pil", "image_grid", "save_grid", "show_images", "show_rows"]


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) in [-1, 1] → (N, H, W, 3) uint8 (values outside [-1, 1] are clipped)."""
    x = images.detach().float().cpu().clamp(-1, 1)
    return ((x + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    return [Image.fromarray(a) for a in to_uint8(images)]


def image_grid(images: torch.Tensor, ncol: int | None = None, pad: int = 2, scale: int = 1) -> Image.Image:
    """Tile a batch into one picture, row-major, ``ncol`` images per row (default: all in one row)."""
    arr = to_uint8(images)
    n, h, w, _ = arr.shape
    ncol = ncol or n
    nrow = -(-n // ncol)
    grid = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, 3), 255, np.uint8)
    for i, a in enumerate(arr):
        r, c = divmod(i, ncol)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = a
    img = Image.fromarray(grid)
    return img.resize((img.width * scale, img.height * scale), Image.NEAREST) if scale > 1 else img


def save_grid(images: torch.Tensor, path, ncol: int | None = None, scale: int = 1) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image_grid(images, ncol=ncol, scale=scale).save(path)
    return path


def show_images(images: torch.Tensor, titles: Sequence[str] | None = None, ncol: int | None = None,
                size: float = 1.6, suptitle: str | None = None):
    """A row (or grid) of images with optional titles; returns the matplotlib figure."""
    import matplotlib.pyplot as plt

    arr = to_uint8(images)
    n = len(arr)
    ncol = ncol or n
    nrow = -(-n // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(size * ncol, size * nrow + (0.3 if suptitle else 0)), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(arr[i])
            if titles is not None and i < len(titles):
                ax.set_title(titles[i], fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return fig


def show_rows(rows: dict[str, torch.Tensor], col_titles: Sequence[str] | None = None, size: float = 1.4):
    """Several labelled rows of the same length (e.g. source / P_t / x_t); returns the figure."""
    import matplotlib.pyplot as plt

    names = list(rows)
    ncol = max(len(v) for v in rows.values())
    fig, axes = plt.subplots(len(names), ncol, figsize=(size * ncol + 0.8, size * len(names)), squeeze=False)
    for r, name in enumerate(names):
        arr = to_uint8(rows[name])
        for c, ax in enumerate(axes[r]):
            ax.set_xticks([]), ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if c < len(arr):
                ax.imshow(arr[c])
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
            if r == 0 and col_titles is not None and c < len(col_titles):
                ax.set_title(col_titles[c], fontsize=8)
    fig.tight_layout()
    return fig
