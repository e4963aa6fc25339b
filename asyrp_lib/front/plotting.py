"""Figures: image grids and small multi-panel plots. No maths lives here."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from ..images import to_pil, to_uint8  # noqa: F401  (re-exported)

__all__ = ["to_uint8", "to_pil", "image_grid", "save_grid", "show_images", "show_rows", "show_edit", "edit_figure", "EditFigure"]


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


def show_edit(source: torch.Tensor, edited: torch.Tensor, *, source_captions: Sequence[str] | None = None,
              edit_captions: Sequence[str] | None = None, title: str | None = None, gain: float = 2.0,
              size: float = 1.25, ncol: int | None = None):
    """Source / edit / |difference| for each image, a caption under each source and edit (e.g. what the toy
    world's oracle reads there), ``title`` above; returns the figure.

    The difference row is |edit − source| averaged over the colour channels, ×``gain`` (white = no change, dark =
    a change of 1/``gain`` of the range or more), so an edit's region shows even where the images look alike.
    ``ncol``: images per row of the figure (default: all in one row; more wrap into blocks of three rows).
    """
    import matplotlib.pyplot as plt

    if source.shape != edited.shape:
        raise ValueError(f"edited: expected the shape of source {tuple(source.shape)}, got {tuple(edited.shape)}")
    src, edt = to_uint8(source), to_uint8(edited)
    diff = ((edited.detach().float().cpu().clamp(-1, 1) - source.detach().float().cpu().clamp(-1, 1)).abs()
            .mean(dim=1) / 2 * gain).clamp(0, 1).numpy()
    n = len(src)
    ncol = min(ncol or n, n)
    blocks = -(-n // ncol)
    cap = 0.32 if (source_captions or edit_captions) else 0.0
    fig, axes = plt.subplots(3 * blocks, ncol, figsize=(size * ncol + 0.9, (size + cap) * 3 * blocks + (0.35 if title else 0)),
                             squeeze=False)
    labels = ("source", "edit", "|difference|")
    for i in range(blocks * ncol):
        b, c = divmod(i, ncol)
        for r in range(3):
            ax = axes[3 * b + r][c]
            ax.set_xticks([]), ax.set_yticks([])
            for sp in ax.spines.values():
                sp.set_visible(False)
            if c == 0:
                ax.set_ylabel(labels[r], fontsize=8)
            if i >= n:
                ax.axis("off")
                continue
            if r == 0:
                ax.imshow(src[i])
                if source_captions is not None:
                    ax.set_xlabel(source_captions[i], fontsize=7)
            elif r == 1:
                ax.imshow(edt[i])
                if edit_captions is not None:
                    ax.set_xlabel(edit_captions[i], fontsize=7)
            else:
                ax.imshow(1 - diff[i], cmap="gray", vmin=0, vmax=1)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


@dataclass
class EditFigure:
    """An edit shown and measured: the figure, the toy world's metrics (``evaluate.edit_metrics``) and the
    sentence that states them."""

    figure: object
    metrics: dict
    sentence: str


def edit_figure(source: torch.Tensor, edited: torch.Tensor, *, attribute: str, target_value: str, oracle,
                what: str = "the edit", **keywords) -> EditFigure:
    """:func:`show_edit` of toy faces with the oracle's reading of ``attribute`` under each source and edit (a ✓
    where the edit reads ``target_value``, the other attributes that changed after a ≠), and the measured numbers
    (success, others kept, LPIPS) in the title and in :attr:`EditFigure.sentence`. By name: the fields of
    :class:`~asyrp_lib.toy.evaluate.MetricOptions` (``lpips=profile.lpips``, ``others=…``), and the figure's
    ``title`` (default ``what``) and ``ncol``."""
    from dataclasses import replace

    from .._utils import grouped_options
    from ..toy.evaluate import MetricOptions, edit_metrics

    g = grouped_options("edit_figure", keywords, {"metrics": (MetricOptions, None)}, also=("title", "ncol"))
    title, ncol = g.get("title"), g.get("ncol")
    m = edit_metrics(source, edited, attribute=attribute, target_value=target_value, oracle=oracle,
                     options=replace(g["metrics"], per_image=True))
    n, per = m["n"], m["images"]
    hits = sum(p["hit"] for p in per)
    kept = sum(not p["changed"] for p in per)
    already = sum(p["before"] == target_value for p in per)
    src_caps = [p["before"] for p in per]
    edit_caps = [p["after"] + (" ✓" if p["hit"] else "") + (f" ≠{','.join(_short_attr(a) for a in p['changed'])}"
                                                            if p["changed"] else "") for p in per]
    lp = f", LPIPS {m['lpips']:.3f}" if m["lpips"] is not None else ""
    sentence = (f"{what[:1].upper() + what[1:]} on {n} faces of which {already} already read {target_value!r}: the oracle "
                f"reads {target_value!r} on {hits} of {n} edits (success {m['success']:.2f}), and the other "
                f"attributes are all kept on {kept} of {n} (others kept {m['others_kept']:.2f}){lp}.")
    head = title or what
    fig = show_edit(source, edited, source_captions=src_caps, edit_captions=edit_caps, ncol=ncol,
                    title=f"{head}: {attribute} → {target_value} on {hits}/{n}, others kept on {kept}/{n}{lp}")
    return EditFigure(figure=fig, metrics=m, sentence=sentence)


def _short_attr(attribute: str) -> str:
    return {"hair_color": "colour", "background": "bg", "glasses": "glasses"}.get(attribute, attribute)
