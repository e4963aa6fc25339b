r"""The generative process of Asyrp (course eq. 6): invert once, then edit with any mix of directions.

An image x_0 is inverted to x_T (deterministic DDIM, η = 0) and generated again by eq. 6 — editing, plain DDIM,
quality boosting, written out in :mod:`asyrp_lib.core.process` — with the combined edit Δh_t = Σ_i c_i f_t^i(h_t)
(:class:`~asyrp_lib.core.process.DeltaH`: directions combine linearly in h; a strength c_i may be negative). A "direction" is a trained :class:`~asyrp_lib.core.delta_net.DeltaNet`, the
folder it was saved to, a constant tensor Δh (the global direction of notebook 05), or any callable
``(h, t) -> Δh``.

:class:`AsyrpEditor` runs it batched, next to the *reconstruction* — the same process without the edit and
with the same boosting noise — so that the difference between the two is the edit alone. Inversions are
cached by image content (:class:`InversionCache`; in memory, and on disk when given a folder).

A large batch is edited in chunks of ``batch_size`` images (default :func:`default_batch_size`: 4 images of
256×256, 64 of 64×64), each inverted and generated on its own, so that only one chunk's U-Net activations are on the device at a time.
The maths per image is unchanged; the boosting noise is drawn from the one ``generator`` chunk after chunk,
so an edit equals editing its chunks in turn with that generator (``asyrp edit`` of a folder streams its
files through exactly these chunks), and at η = 0 it equals one unchunked batch to float rounding.

Speed options of the editor (all opt-in, see :mod:`asyrp_lib.core.hspace`): ``batch_size`` (images per chunk),
``precision="bf16"`` (bfloat16 autocast in the U-Net, for inversion and generation; how far its edits are
from float32 ones is measured in ``tests/test_pipeline.py`` and, on the celebahq architecture, by
``benchmarks/bench_gpu.py``), ``channels_last=True`` and ``compile=True``. Every asymmetric step runs the
encoder once (``HSpaceUNet.eps``), and at the first step, where the edited and the reconstruction rows are
both x_T, the U-Net runs on one copy of them.
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import torch

from . import ddim
from .._utils import check_images, check_int, check_timestep, grouped_options
from .cache import InversionCache, cache_dir, image_hash, model_key
from .delta_net import DeltaNet
from .hspace import HSpaceUNet, h_shape as unet_h_shape
from .process import DeltaH, Phases, RunOptions, check_intervals, combine_delta_h, run_process

__all__ = ["AsyrpEditor", "EditResult", "Direction", "InversionCache", "MAX_STRENGTH", "image_hash", "model_key",
           "default_cache_dir", "check_timestep", "check_intervals", "check_strength", "combine_delta_h", "intervals_from", "as_direction",
           "CHUNK_PIXELS", "default_batch_size", "SpeedOptions", "InversionOptions"]

#: The root of the library's on-disk caches (:func:`asyrp_lib.core.cache.cache_dir`).
default_cache_dir = cache_dir

#: The largest |strength| accepted for one direction (beyond it the edit leaves the image manifold).
MAX_STRENGTH = 5.0

#: Pixels per chunk in :meth:`AsyrpEditor.edit`: 4 images of 256×256 (64 of 64×64, 256 of 32×32). An edit runs
#: the U-Net's encoder on two rows per image (edited, reconstruction) and its decoder on three (h + Δh, h,
#: reconstruction); on the celebahq U-Net in float32 that is, by our estimate from its layer sizes (not measured
#: on a GPU), about 1.3 GB of activations per 256×256 image, so a chunk stays well inside the 15 GB of Colab's T4.
CHUNK_PIXELS = 4 * 256 * 256


def default_batch_size(image_size: int) -> int:
    """Images per chunk at ``image_size``: as many as :data:`CHUNK_PIXELS` allows, at least one."""
    return max(1, CHUNK_PIXELS // (int(image_size) ** 2))


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------
def check_strength(c, what: str) -> float:
    """A finite strength in [-MAX_STRENGTH, MAX_STRENGTH], or a ``ValueError`` naming ``what``."""
    try:
        c = float(c)
    except (TypeError, ValueError):
        raise ValueError(f"strength of {what}: expected a number, got {c!r}") from None
    if not math.isfinite(c) or abs(c) > MAX_STRENGTH:
        raise ValueError(f"strength of {what}: expected a value in [-{MAX_STRENGTH:g}, {MAX_STRENGTH:g}], got {c}")
    return c


# --------------------------------------------------------------------------------------------
# Directions and their linear combination
# --------------------------------------------------------------------------------------------
def as_direction(direction, *, h_shape, model_id: str | None = None, device=None, dtype=torch.float32,
                 allow_other_model: bool = False) -> Callable:
    """Turn a DeltaNet, a checkpoint folder, a constant Δh tensor or a callable into ``f(h, t) -> Δh``.

    Checkpoints and DeltaNets must fit ``h_shape`` (and, unless ``allow_other_model``, ``model_id``); a tensor
    must have shape (C, H, W) or (1, C, H, W) equal to ``h_shape``.
    """
    if isinstance(direction, (str, os.PathLike)):
        direction = DeltaNet.load(direction, h_shape=h_shape, model_id=model_id, allow_other_model=allow_other_model)
    if isinstance(direction, DeltaNet):
        if direction.h_shape != tuple(h_shape):
            raise ValueError(f"direction: this DeltaNet was made for h of shape "
                             f"{'×'.join(map(str, direction.h_shape))}, but this model's h has shape "
                             f"{'×'.join(map(str, h_shape))}")
        made_for = direction.metadata.get("model_id")
        if model_id is not None and made_for not in (None, model_id) and not allow_other_model:
            raise ValueError(f"direction: this DeltaNet was trained on model {made_for!r}, but the model in use is "
                             f"{model_id!r}; pass allow_other_model=True to use it anyway")
        return direction.to(device=device, dtype=dtype).eval()
    if isinstance(direction, torch.Tensor):
        d = direction.detach()
        if d.dim() == 3:
            d = d.unsqueeze(0)
        if d.dim() != 4 or d.shape[0] != 1 or tuple(d.shape[1:]) != tuple(h_shape):
            raise ValueError(f"direction: a constant Δh must have shape {tuple(h_shape)} or (1, "
                             f"{', '.join(map(str, h_shape))}), got {tuple(direction.shape)}")
        d = d.to(device=device, dtype=dtype)
        return lambda h, t: d.expand_as(h)
    if callable(direction):
        return direction
    raise ValueError(f"direction: expected a DeltaNet, a checkpoint folder, a Δh tensor or a callable (h, t) -> Δh, "
                     f"got {type(direction).__name__}")


def intervals_from(t_edit, t_boost, metadata: Sequence[tuple[str, dict]], *, defaults=(None, None),
                   warn: bool = True, stacklevel: int = 3) -> tuple[int | None, int | None]:
    """The one rule for a default t_edit / t_boost: each given, else its ``defaults`` entry, else the first
    direction checkpoint's that records it (``metadata``: (name, checkpoint metadata) pairs); ``None`` where none
    says. With ``warn``, a ``UserWarning`` when neither is given and the checkpoints disagree."""
    out = []
    for key, given, default in (("t_edit", t_edit, defaults[0]), ("t_boost", t_boost, defaults[1])):
        values = {name: m.get(key) for name, m in metadata if m.get(key) is not None}
        if warn and given is None and default is None and len(set(values.values())) > 1:
            first = next(iter(values.items()))
            warnings.warn(f"{key}: the directions were trained with different values "
                          f"({', '.join(f'{n}: {v}' for n, v in values.items())}); using {first[1]} (from "
                          f"{first[0]}). Pass {key}= to choose.", UserWarning, stacklevel=stacklevel)
        out.append(given if given is not None else default if default is not None else
                   next(iter(values.values()), None))
    return out[0], out[1]


# --------------------------------------------------------------------------------------------
# The editor
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SpeedOptions:
    """How fast the editor runs, never what it computes (beyond rounding): ``batch_size`` (images per chunk;
    default :func:`default_batch_size`), ``precision`` (``"fp32"`` or ``"bf16"``), ``channels_last``, ``compile``
    (``True`` or a backend name). See :class:`AsyrpEditor`."""

    batch_size: int | None = None
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool | str = False


@dataclass(frozen=True)
class InversionOptions:
    """How images are inverted and their x_T kept: ``refine`` (fixed-point iterations of each inversion step;
    default the profile's ``invert_refine``), ``cache_dir`` (also keep inversions on disk there, at most
    ``cache_disk_bytes``, oldest first out), ``cache_memory`` (the most inversions kept in memory)."""

    refine: int | None = None
    cache_dir: object = None
    cache_memory: int = 4096
    cache_disk_bytes: int | None = InversionCache.DEFAULT_MAX_DISK_BYTES


@dataclass
class EditResult:
    """Edited images next to their reconstruction (the same process without the edit, same noise)."""

    edited: torch.Tensor  # (N, 3, S, S) in [-1, 1] (clamped)
    reconstruction: torch.Tensor | None  # (N, 3, S, S), or None when not asked for
    source: torch.Tensor  # the input images
    x_T: torch.Tensor  # their inversions
    t_edit: int
    t_boost: int
    timesteps: list[int]
    strengths: list[float]
    previews: list = field(default_factory=list)  # (t, P_t of the edited branch) at each edit step, if kept


class AsyrpEditor:
    """Invert images once, then edit them with any set of directions and strengths (eq. 6).

    ``profile``: a loaded :class:`~asyrp_lib.models.profiles.Profile`; ``n_steps``: DDIM steps (default the
    profile's); ``t_edit``/``t_boost``: default intervals (else taken from the first direction's checkpoint
    metadata, else required by :meth:`edit`); ``refine``: fixed-point iterations of each inversion step
    (default: the profile's ``invert_refine``); ``image_size``: work at another square size than the profile's
    (the h shape follows); ``cache_dir``: also keep inversions on disk there (at most ``cache_disk_bytes``,
    oldest first out); ``cache_memory``: the most inversions kept in memory (a streaming caller that never
    edits an image twice can keep this small).

    Speed (all opt-in): ``batch_size``: images per chunk (default :func:`default_batch_size` of the image size);
    ``precision``: ``"fp32"`` (default) or ``"bf16"`` (bfloat16 autocast in the U-Net, for inversion and
    generation; inversions are cached per precision); ``channels_last``: channels-last memory format (converts
    the profile's U-Net weights in place: the same values); ``compile``: ``torch.compile`` the U-Net's halves
    (``True`` or a backend name; the first edit pays for the compilation). These four are one
    :class:`SpeedOptions` (``speed=``), ``refine`` and the cache's three one :class:`InversionOptions`
    (``inversion=``); each field may also be given by name (``precision="bf16"``, ``cache_dir=…``), and so may
    ``image_size``.
    """

    def __init__(self, profile, *, n_steps: int | None = None, t_edit: int | None = None,
                 t_boost: int | None = None, progress: bool = True, speed: SpeedOptions | None = None,
                 inversion: InversionOptions | None = None, **keywords):
        g = grouped_options("AsyrpEditor", keywords, {"speed": (SpeedOptions, speed),
                                                      "inversion": (InversionOptions, inversion)}, also=("image_size",))
        speed, inversion, image_size = g["speed"], g["inversion"], g.get("image_size")
        batch_size, precision, channels_last, compile = (speed.batch_size, speed.precision, speed.channels_last,
                                                         speed.compile)
        refine, cache_dir = inversion.refine, inversion.cache_dir
        cache_memory, cache_disk_bytes = inversion.cache_memory, inversion.cache_disk_bytes
        self.speed, self.inversion = speed, inversion
        if batch_size is not None:
            check_int(batch_size, "batch_size")
        self.profile = profile
        T = profile.schedule.num_train_timesteps
        self.n_steps = int(n_steps or profile.default_steps)
        self.timesteps = ddim.timesteps(self.n_steps, T)
        self.image_size = int(image_size or profile.image_size)
        self.h_shape = unet_h_shape(profile.unet, self.image_size)
        self.hspace = HSpaceUNet(profile.unet, precision=precision, channels_last=channels_last, compile=compile)
        self._batch_size = batch_size
        if t_edit is not None:
            check_timestep(t_edit, "t_edit", T)
        if t_boost is not None:
            check_timestep(t_boost, "t_boost", T)
        self.t_edit, self.t_boost = t_edit, t_boost
        self.cache = InversionCache(cache_dir, max_memory=cache_memory, max_disk_bytes=cache_disk_bytes)
        self.refine = int(getattr(profile, "invert_refine", 0) if refine is None else refine)
        self.model_key = model_key(profile.model_id, profile.unet) + ("" if precision == "fp32" else f"#{precision}")
        self.progress = progress
        self._loaded: dict[str, DeltaNet] = {}

    @property
    def device(self) -> torch.device:
        return self.hspace.device

    @property
    def batch_size(self) -> int:
        """Images per chunk that :meth:`edit` uses by default: the editor's ``batch_size``, else
        :func:`default_batch_size` of the image size."""
        return self._batch_size or default_batch_size(self.image_size)

    @property
    def precision(self) -> str:
        """``"fp32"`` or ``"bf16"``: the U-Net's arithmetic (see :class:`~asyrp_lib.core.hspace.HSpaceUNet`)."""
        return self.hspace.precision

    def _check_images(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images, "images", channels=3)
        s = self.image_size
        if tuple(images.shape[-2:]) != (s, s):
            raise ValueError(f"images: expected {s}×{s} images for this editor, got {tuple(images.shape)}; "
                             f"load them with asyrp_lib.images.load_images(path, {s})")
        return images.to(self.device, self.hspace.dtype)

    def invert(self, images: torch.Tensor) -> torch.Tensor:
        """x_T for each image: deterministic DDIM inversion (η = 0), cached by image content."""
        x0 = self._check_images(images)
        return self.cache.invert(self.hspace, x0, self.timesteps, self.profile.schedule, model=self.model_key,
                                 progress=self.progress, refine=self.refine)

    def directions(self, directions, *, allow_other_model: bool = False) -> list["Direction"]:
        """Normalise ``directions`` (a list of ``(direction, strength)`` pairs, or one direction at strength 1)
        into :class:`Direction` items (``f``, ``strength``, ``source``), loading checkpoint folders once."""
        if directions is None:
            return []
        if isinstance(directions, (str, os.PathLike, torch.Tensor)) or callable(directions):
            directions = [directions]
        elif (isinstance(directions, tuple) and len(directions) == 2 and isinstance(directions[1], (int, float))
              and not isinstance(directions[1], bool)):
            directions = [directions]  # one (direction, strength) pair
        elif not isinstance(directions, (list, tuple)):
            raise ValueError(f"directions: expected a list of (direction, strength) pairs, got {type(directions).__name__}")
        return [self._direction(item, allow_other_model) for item in directions]

    def _direction(self, item, allow_other_model: bool) -> "Direction":
        d, c = (item, 1.0) if not isinstance(item, (list, tuple)) else (tuple(item) + (1.0,))[:2]
        what = str(d) if isinstance(d, (str, os.PathLike)) else type(d).__name__
        c = check_strength(c, what)
        if isinstance(d, (str, os.PathLike)):
            key = str(Path(d).expanduser().resolve())
            if key not in self._loaded:
                self._loaded[key] = DeltaNet.load(d, h_shape=self.h_shape, model_id=self.profile.model_id,
                                                  allow_other_model=allow_other_model)
            d = self._loaded[key]
        f = as_direction(d, h_shape=self.h_shape, model_id=self.profile.model_id, device=self.device,
                         dtype=self.hspace.dtype, allow_other_model=allow_other_model)
        return Direction(f=f, strength=c, source=d)

    def delta_h(self, h: torch.Tensor, t, directions) -> torch.Tensor:
        """Δh_t = Σ_i c_i f_t^i(h_t) for the given directions (see :func:`combine_delta_h`)."""
        dirs = self.directions(directions)
        with torch.no_grad():
            return combine_delta_h(h, t, [(d.f, d.strength) for d in dirs])

    def intervals(self, t_edit, t_boost, dirs: list["Direction"]) -> tuple[int, int]:
        """t_edit / t_boost checked for this editor's schedule: given here, else the editor's, else the first
        direction checkpoint's (:func:`intervals_from`)."""
        meta = [(d.name, d.source.metadata) for d in dirs if isinstance(d.source, DeltaNet)]
        t_edit, t_boost = intervals_from(t_edit, t_boost, meta, defaults=(self.t_edit, self.t_boost), stacklevel=4)
        if t_edit is None or t_boost is None:
            raise ValueError("t_edit, t_boost: not given, and no direction checkpoint carries them; pass them "
                             "(e.g. from asyrp intervals, or asyrp_lib.core.intervals.find_intervals)")
        return check_intervals(t_edit, t_boost, self.timesteps, self.profile.schedule.num_train_timesteps)

    def edit(self, images: torch.Tensor, directions=None, *, phases: Phases | None = None,
             generator: torch.Generator | None = None, reconstruct: bool = True, keep_previews: bool = False,
             batch_size: int | None = None, **keywords) -> EditResult:
        """Edit ``images`` (N, 3, S, S) in [-1, 1] with ``directions`` = [(direction, strength), …] (eq. 6).

        ``phases`` (:class:`~asyrp_lib.core.process.Phases`), or its fields by name (``t_edit``, ``t_boost``,
        ``eta_boost``, ``asymmetric``): asymmetric steps with Δh = Σ c_i f_t^i(h_t) for t ≥ t_edit
        (``asymmetric=False``: the edited ε in D_t too, the symmetric step), plain DDIM down to t_boost, then steps
        with η = ``eta_boost`` (noise from ``generator``; the reconstruction gets the same noise). t_edit and
        t_boost left out come from the editor, else from the directions (:meth:`intervals`).
        ``allow_other_model=True`` (by name) accepts directions trained on another model.

        ``batch_size``: images inverted and generated together (default :attr:`batch_size`, from the image
        size). With more images than that, chunk after chunk draws its boosting noise from ``generator``, and
        the results are gathered on the device ``images`` came on (on the editor's device for a single chunk).
        """
        g = grouped_options("edit", keywords, {"phases": (Phases, phases)}, also=("allow_other_model",))
        dirs = self.directions(directions, allow_other_model=g.get("allow_other_model", False))
        phases = g["phases"]
        t_edit, t_boost = self.intervals(phases.t_edit, phases.t_boost, dirs)
        phases = replace(phases, t_edit=t_edit, t_boost=t_boost)
        if not 0.0 <= float(phases.eta_boost) <= 1.0:
            raise ValueError(f"eta_boost: expected a value in [0, 1], got {phases.eta_boost}")
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                       or batch_size < 1):
            raise ValueError(f"batch_size: expected a positive integer (images per chunk) or None, got {batch_size!r}")
        check_images(images, "images", channels=3)
        n = images.shape[0]
        step = self.batch_size if batch_size is None else batch_size
        if n <= step:
            return self._edit_chunk(images, dirs, phases, generator, reconstruct, keep_previews)
        parts = [self._edit_chunk(images[i:i + step], dirs, phases, generator, reconstruct, keep_previews,
                                  out_device=images.device)
                 for i in range(0, n, step)]
        previews = [(t, torch.cat([p.previews[k][1] for p in parts])) for k, (t, _) in enumerate(parts[0].previews)]
        return EditResult(edited=torch.cat([p.edited for p in parts]),
                          reconstruction=torch.cat([p.reconstruction for p in parts]) if reconstruct else None,
                          source=torch.cat([p.source for p in parts]), x_T=torch.cat([p.x_T for p in parts]),
                          t_edit=t_edit, t_boost=t_boost, timesteps=list(self.timesteps),
                          strengths=[d.strength for d in dirs], previews=previews)

    def _edit_chunk(self, images, dirs, phases: Phases, generator, reconstruct, keep_previews,
                    out_device=None) -> EditResult:
        """Invert and generate one chunk; its tensors moved to ``out_device`` when given."""
        x0 = self._check_images(images)
        x_T = self.invert(x0)
        edited, recon, previews = self.generate(x_T, dirs, phases=phases, generator=generator,
                                                reconstruct=reconstruct, keep_previews=keep_previews)
        if out_device is not None:
            x0, x_T, edited, recon = (x.to(out_device) if x is not None else None for x in (x0, x_T, edited, recon))
        return EditResult(edited=edited, reconstruction=recon, source=x0, x_T=x_T, t_edit=phases.t_edit,
                          t_boost=phases.t_boost, timesteps=list(self.timesteps), strengths=[d.strength for d in dirs],
                          previews=previews)

    @torch.no_grad()
    def generate(self, x_T: torch.Tensor, dirs: list["Direction"], *, phases: Phases | None = None,
                 generator: torch.Generator | None = None, reconstruct: bool = True, keep_previews: bool = False,
                 **keywords):
        """Eq. (6) from ``x_T`` with the combined Δh of ``dirs`` (:func:`asyrp_lib.core.process.run_process`), the
        reconstruction in the same batch: (edited, reconstruction or None, previews), clamped to [-1, 1].
        ``phases`` (t_edit and t_boost required), or its fields by name."""
        phases = grouped_options("generate", keywords, {"phases": (Phases, phases)})["phases"]
        if phases.t_edit is None or phases.t_boost is None:
            raise ValueError("t_edit, t_boost: generate needs both (see AsyrpEditor.intervals)")
        edit = DeltaH([(d.f, d.strength) for d in dirs]) if dirs else None
        phases = phases if dirs else replace(phases, t_edit=None)
        run = RunOptions(reconstruct=reconstruct and bool(dirs), generator=generator, progress=self.progress,
                         desc="Asyrp editing")
        edited, recon, previews = run_process(self.hspace, x_T, self.timesteps, self.profile.schedule, edit=edit,
                                              phases=phases, run=run, keep_previews=keep_previews)
        if reconstruct and not dirs:
            recon = edited  # no edit: the process is the reconstruction
        previews = [(t, p.clamp(-1, 1)) for t, p in previews]
        if self.hspace.channels_last:  # hand back tensors in the usual memory format
            edited, recon = (x.contiguous() if x is not None else None for x in (edited, recon))
        return edited.clamp(-1, 1), (recon.clamp(-1, 1) if recon is not None else None), previews


class Direction(NamedTuple):
    """One direction of an edit: ``f(h, t) -> Δh``, its strength, and what it was made from."""

    f: Callable
    strength: float
    source: object  # a DeltaNet, a tensor or a callable

    @property
    def name(self) -> str:
        if isinstance(self.source, DeltaNet):
            m = self.source.metadata
            return str(m.get("name") or m.get("target") or "direction")
        return type(self.source).__name__
