"""Small shared helpers: input checks at the library's boundary and progress bars."""
from __future__ import annotations

import os
from pathlib import Path

import torch
from tqdm.auto import tqdm


def check_images(x, name: str, *, value_range: tuple[float, float] | None = (-1.0, 1.0), tol: float = 1e-3,
                 channels: int | None = None) -> torch.Tensor:
    """Raise a ValueError naming ``name`` unless ``x`` is a float tensor (N, C, H, W) within ``value_range``."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor of shape (N, C, H, W), got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{name}: expected shape (N, C, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point tensor, got {x.dtype}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{name}: expected {channels} channels, got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    if value_range is not None and x.numel():
        lo, hi = value_range
        mn, mx = float(x.min()), float(x.max())
        if mn < lo - tol or mx > hi + tol:
            raise ValueError(f"{name}: expected values in [{lo:g}, {hi:g}] (images scaled to [-1, 1]), "
                             f"got min {mn:.3f}, max {mx:.3f}")
    return x


def progress_bar(iterable, *, enabled: bool = True, desc: str | None = None, total: int | None = None, **kw):
    """A tqdm bar (notebook-aware) or the plain iterable when ``enabled`` is False."""
    if not enabled:
        return iterable
    return tqdm(iterable, desc=desc, total=total, leave=False, **kw)


def data_dir() -> Path:
    """The folder of shipped weights: ``$ASYRP_DATA`` if set, else the repository's ``data/``."""
    return Path(os.environ.get("ASYRP_DATA") or Path(__file__).resolve().parent.parent / "data")


def add_shift(base: torch.Tensor, shift: torch.Tensor, name: str) -> torch.Tensor:
    """``base + shift`` where ``shift`` must broadcast to ``base``'s shape; else a ValueError naming ``name``."""
    def fail():
        return ValueError(f"{name}: expected a tensor broadcastable to {tuple(base.shape)}, "
                          f"got {tuple(getattr(shift, 'shape', ()))}")
    try:
        out = base + shift.to(dtype=base.dtype)
    except (RuntimeError, AttributeError):
        raise fail() from None
    if out.shape != base.shape:
        raise fail()
    return out
