"""The course's on-disk caches, in one place: where they live, the keys, and the inversion cache.

Everything the library caches lives under :func:`cache_dir` (``$ASYRP_CACHE``, else ``~/.cache/asyrp``):
``inversions/`` (x_T of each image, :class:`InversionCache`), ``intervals/`` (t_edit / t_boost curves,
:func:`asyrp_lib.core.intervals.find_intervals`) and ``lpips/`` (the converted LPIPS backbone,
:mod:`asyrp_lib.models.perceptual`). Deleting the folder is always safe: everything in it is recomputed on demand.
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
    on disk (one safetensors file per image), bounded there too: after each batch written, the least recently
    used files (by modification time; a file read counts as used) are deleted until the folder holds at most
    ``max_disk_files`` files and ``max_disk_bytes`` bytes (``None``: no bound of that kind). ``hits`` and
    ``misses`` count images served from the cache and inverted anew.
    """

    #: Default bound of the on-disk cache: 1 GiB (about 1300 inversions of 256×256 images).
    DEFAULT_MAX_DISK_BYTES = 1 << 30

    def __init__(self, folder=None, *, max_memory: int = 4096, max_disk_files: int | None = None,
                 max_disk_bytes: int | None = DEFAULT_MAX_DISK_BYTES):
        for name, value, optional in (("max_memory", max_memory, False), ("max_disk_files", max_disk_files, True),
                                      ("max_disk_bytes", max_disk_bytes, True)):
            if (value is None and not optional) or (value is not None and (
                    isinstance(value, bool) or not isinstance(value, int) or value < 0)):
                raise ValueError(f"{name}: expected a non-negative integer{' or None' if optional else ''}, "
                                 f"got {value!r}")
        self.folder = Path(folder) if folder is not None else None
        self.max_memory = int(max_memory)
        self.max_disk_files = max_disk_files
        self.max_disk_bytes = max_disk_bytes
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
        try:
            os.utime(path)  # recently used: pruned last
        except OSError:
            pass
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

    def _disk_entries(self) -> list[tuple[Path, int]]:
        """(path, size) of each cached inversion on disk, least recently used first."""
        if self.folder is None or not self.folder.is_dir():
            return []
        entries = []
        for p in self.folder.glob("*.safetensors"):
            try:
                st = p.stat()
            except OSError:  # removed meanwhile (another process pruning)
                continue
            entries.append((st.st_mtime_ns, p.name, p, st.st_size))
        return [(p, size) for _, _, p, size in sorted(entries, key=lambda e: e[:2])]

    def disk_files(self) -> list[Path]:
        """The cached inversions on disk, least recently used first."""
        return [p for p, _ in self._disk_entries()]

    def prune(self) -> int:
        """Delete the least recently used files until the disk bounds hold; returns how many were deleted."""
        if self.folder is None or (self.max_disk_files is None and self.max_disk_bytes is None):
            return 0
        entries = self._disk_entries()
        count, total, removed = len(entries), sum(size for _, size in entries), 0
        for path, size in entries:
            if ((self.max_disk_files is None or count <= self.max_disk_files)
                    and (self.max_disk_bytes is None or total <= self.max_disk_bytes)):
                break
            path.unlink(missing_ok=True)
            count, total, removed = count - 1, total - size, removed + 1
        return removed

    def invert(self, unet, images: torch.Tensor, timesteps: Sequence[int], schedule: ddim.Schedule, *,
               model: str, progress: bool = True, refine: int = 0) -> torch.Tensor:
        """x_T for each image (batched over the images not yet cached), on the images' device; ``refine``: the
        fixed-point iterations of :func:`asyrp_lib.core.ddim.invert` (part of the key)."""
        steps = list(timesteps) if not refine else [f"refine{refine}", *timesteps]
        keys = [self.key(model, img, steps) for img in images]
        found = [self._read(k) for k in keys]
        todo = [i for i, f in enumerate(found) if f is None]
        self.hits += len(keys) - len(todo)
        self.misses += len(todo)
        if todo:
            x_T = ddim.invert(unet, images[todo], timesteps, schedule, progress=progress, refine=refine)
            for i, x in zip(todo, x_T):
                self._write(keys[i], x)
                found[i] = x.detach().to("cpu")
            self.prune()
        return torch.stack([f.to(images.device, images.dtype) for f in found])
