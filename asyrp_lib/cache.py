"""The course's on-disk caches, in one place: where they live, the keys, and the inversion cache.

Everything the library caches lives under :func:`cache_dir` (``$ASYRP_CACHE``, else ``~/.cache/asyrp``):
``inversions/`` (x_T of each image, :class:`InversionCache`), ``intervals/`` (t_edit / t_boost curves,
:func:`asyrp_lib.intervals.find_intervals`) and ``lpips/`` (the converted LPIPS backbone,
:mod:`asyrp_lib.perceptual`). Deleting the folder is always safe: everything in it is recomputed on demand.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

import torch

from . import ddim

__all__ = ["cache_dir", "image_hash", "model_key", "InversionCache"]


def cache_dir(*parts: str) -> Path:
    """``$ASYRP_CACHE`` or ``~/.cache/asyrp``, joined with ``parts`` (e.g. ``cache_dir("lpips")``)."""
    root = Path(os.environ.get("ASYRP_CACHE") or Path.home() / ".cache" / "asyrp")
    return root.joinpath(*parts)


def image_hash(image: torch.Tensor) -> str:
    """SHA-256 of one image's shape and float32 values: the same picture gives the same key anywhere."""
    x = image.detach().to("cpu", torch.float32).contiguous()
    h = hashlib.sha256(str(tuple(x.shape)).encode())
    h.update(x.numpy().tobytes())
    return h.hexdigest()


def model_key(model_id: str, unet: torch.nn.Module) -> str:
    """``model_id`` plus a fingerprint of the U-Net's first and last weights (two models with the same name
    but other weights get other keys)."""
    h = hashlib.sha256(str(model_id).encode())
    h.update(str(sum(p.numel() for p in unet.parameters())).encode())
    for name in ("conv_in", "conv_out"):
        w = getattr(unet, name).weight.detach().to("cpu", torch.float32).contiguous()
        h.update(w.numpy().tobytes())
    return f"{model_id}#{h.hexdigest()[:16]}"


class InversionCache:
    """x_T = invert(x_0) for each image, keyed by model, image content and DDIM timesteps.

    Cached in memory (at most ``max_memory`` images, the oldest dropped first) and, when ``folder`` is given,
    on disk (one safetensors file per image). ``hits`` and ``misses`` count images served from the cache and
    inverted anew.
    """

    def __init__(self, folder=None, *, max_memory: int = 4096):
        self.folder = Path(folder) if folder is not None else None
        self.max_memory = int(max_memory)
        self.memory: dict[str, torch.Tensor] = {}
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(model: str, image: torch.Tensor, timesteps: Sequence[int]) -> str:
        h = hashlib.sha256(f"{model}|{','.join(map(str, timesteps))}|{image_hash(image)}".encode())
        return h.hexdigest()[:40]

    def _remember(self, key: str, x_T: torch.Tensor) -> None:
        self.memory[key] = x_T
        while len(self.memory) > self.max_memory:
            self.memory.pop(next(iter(self.memory)))

    def _read(self, key: str):
        if key in self.memory:
            return self.memory[key]
        if self.folder is None:
            return None
        path = self.folder / f"{key}.safetensors"
        if not path.is_file():
            return None
        from safetensors.torch import load_file

        try:
            x = load_file(str(path))["x_T"]
        except Exception:  # a corrupt or partial file: invert again
            return None
        self._remember(key, x)
        return x

    def _write(self, key: str, x_T: torch.Tensor) -> None:
        x_T = x_T.detach().to("cpu").contiguous()
        self._remember(key, x_T)
        if self.folder is not None:
            from safetensors.torch import save_file

            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = self.folder / f"{key}.safetensors.tmp"
            save_file({"x_T": x_T}, str(tmp))
            os.replace(tmp, self.folder / f"{key}.safetensors")

    def invert(self, unet, images: torch.Tensor, timesteps: Sequence[int], schedule: ddim.Schedule, *,
               model: str, progress: bool = True) -> torch.Tensor:
        """x_T for each image (batched over the images not yet cached), on the images' device."""
        keys = [self.key(model, img, timesteps) for img in images]
        found = [self._read(k) for k in keys]
        todo = [i for i, f in enumerate(found) if f is None]
        self.hits += len(keys) - len(todo)
        self.misses += len(todo)
        if todo:
            x_T = ddim.invert(unet, images[todo], timesteps, schedule, progress=progress)
            for i, x in zip(todo, x_T):
                self._write(keys[i], x)
                found[i] = x.detach().to("cpu")
        return torch.stack([f.to(images.device, images.dtype) for f in found])
