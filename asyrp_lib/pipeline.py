r"""The generative process of Asyrp (course eq. 6): invert once, then edit with any mix of directions.

For DDIM timesteps T > … > 0 and an image x_0 inverted to x_T (deterministic, η = 0), each step t → t_prev is

    t ≥ t_edit            x_{t-1} = sqrt(ᾱ_{t-1}) P_t(ε(x_t | h_t + Δh_t)) + D_t(ε(x_t))     editing (eq. 4/5), η = 0
    t_boost ≤ t < t_edit  x_{t-1} = sqrt(ᾱ_{t-1}) P_t(ε(x_t)) + D_t(ε(x_t))                plain DDIM, η = 0
    t < t_boost           x_{t-1} = sqrt(ᾱ_{t-1}) P_t(ε) + D_t(ε) + σ_t z,  η = 1            quality boosting

with the combined edit Δh_t = Σ_i c_i f_t^i(h_t) (§5 of the design: directions combine linearly in h;
a strength c_i may be negative). A "direction" is a trained :class:`~asyrp_lib.delta_net.DeltaNet`, the
folder it was saved to, a constant tensor Δh (the global direction of notebook 05), or any callable
``(h, t) -> Δh``.

:class:`AsyrpEditor` runs it batched, next to the *reconstruction* — the same process without the edit and
with the same boosting noise — so that the difference between the two is the edit alone. Inversions are
cached by image content (:class:`InversionCache`; in memory, and on disk when given a folder).
"""
from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from . import ddim
from ._utils import check_images, progress_bar
from .delta_net import DeltaNet
from .hspace import Encoded, HSpaceUNet, h_shape as unet_h_shape

__all__ = ["AsyrpEditor", "EditResult", "InversionCache", "MAX_STRENGTH", "image_hash", "model_key",
           "default_cache_dir", "check_timestep", "check_intervals", "combine_delta_h", "as_direction"]

#: The largest |strength| accepted for one direction (beyond it the edit leaves the image manifold).
MAX_STRENGTH = 5.0


# --------------------------------------------------------------------------------------------
# Keys and caches
# --------------------------------------------------------------------------------------------
def default_cache_dir() -> Path:
    """``$ASYRP_CACHE`` or ``~/.cache/asyrp``: the root of the course's on-disk caches."""
    return Path(os.environ.get("ASYRP_CACHE") or Path.home() / ".cache" / "asyrp")


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

    Always cached in memory; also on disk (one safetensors file per image) when ``folder`` is given.
    ``hits`` and ``misses`` count images served from the cache and inverted anew.
    """

    def __init__(self, folder=None):
        self.folder = Path(folder) if folder is not None else None
        self.memory: dict[str, torch.Tensor] = {}
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(model: str, image: torch.Tensor, timesteps: Sequence[int]) -> str:
        h = hashlib.sha256(f"{model}|{','.join(map(str, timesteps))}|{image_hash(image)}".encode())
        return h.hexdigest()[:40]

    def _read(self, key: str):
        if key in self.memory:
            return self.memory[key]
        if self.folder is not None:
            path = self.folder / f"{key}.safetensors"
            if path.is_file():
                from safetensors.torch import load_file

                try:
                    x = load_file(str(path))["x_T"]
                except Exception:  # a corrupt or partial file: invert again
                    return None
                self.memory[key] = x
                return x
        return None

    def _write(self, key: str, x_T: torch.Tensor) -> None:
        x_T = x_T.detach().to("cpu").contiguous()
        self.memory[key] = x_T
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


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------
def check_timestep(value, name: str, num_train_timesteps: int = 1000) -> int:
    """An integer timestep in [0, T-1], or a ``ValueError`` naming ``name``."""
    T = num_train_timesteps
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and
                                                                          not value.is_integer()):
        raise ValueError(f"{name}: expected an integer timestep in [0, {T - 1}], got {value!r}")
    if not 0 <= int(value) <= T - 1:
        raise ValueError(f"{name}: expected an integer timestep in [0, {T - 1}], got {value!r}")
    return int(value)


def check_intervals(t_edit, t_boost, timesteps: Sequence[int], num_train_timesteps: int = 1000) -> tuple[int, int]:
    """Validate (t_edit, t_boost) for a DDIM schedule: both in [0, T-1], t_boost ≤ t_edit, and t_edit at or
    below the first step (otherwise no step would edit)."""
    t_edit = check_timestep(t_edit, "t_edit", num_train_timesteps)
    t_boost = check_timestep(t_boost, "t_boost", num_train_timesteps)
    if t_boost > t_edit:
        raise ValueError(f"t_boost: expected t_boost ≤ t_edit (boosting happens after editing), got "
                         f"t_boost={t_boost} > t_edit={t_edit}")
    if t_edit > max(timesteps):
        raise ValueError(f"t_edit: {t_edit} is above the first DDIM step ({max(timesteps)} with {len(timesteps)} "
                         f"steps), so nothing would be edited; use a smaller t_edit or more steps")
    return t_edit, t_boost


def _check_strength(c, what: str) -> float:
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


def combine_delta_h(h: torch.Tensor, t, directions: Sequence[tuple[Callable, float]]) -> torch.Tensor:
    """Δh_t = Σ_i c_i f_t^i(h_t): the linear combination of the directions' edits (zero with no directions)."""
    delta = torch.zeros_like(h)
    for f, c in directions:
        if c != 0:
            delta = delta + c * f(h, t)
    return delta


# --------------------------------------------------------------------------------------------
# The editor
# --------------------------------------------------------------------------------------------
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

    ``profile``: a loaded :class:`~asyrp_lib.profiles.Profile`; ``n_steps``: DDIM steps (default the
    profile's); ``t_edit``/``t_boost``: default intervals (else taken from the first direction's checkpoint
    metadata, else required by :meth:`edit`); ``image_size``: work at another square size than the profile's
    (the h shape follows); ``cache_dir``: also keep inversions on disk there.
    """

    def __init__(self, profile, *, n_steps: int | None = None, t_edit: int | None = None,
                 t_boost: int | None = None, image_size: int | None = None, cache_dir=None, progress: bool = True):
        self.profile = profile
        T = profile.schedule.num_train_timesteps
        self.n_steps = int(n_steps or profile.default_steps)
        self.timesteps = ddim.timesteps(self.n_steps, T)
        self.image_size = int(image_size or profile.image_size)
        self.h_shape = unet_h_shape(profile.unet, self.image_size)
        self.hspace = HSpaceUNet(profile.unet)
        if t_edit is not None:
            check_timestep(t_edit, "t_edit", T)
        if t_boost is not None:
            check_timestep(t_boost, "t_boost", T)
        self.t_edit, self.t_boost = t_edit, t_boost
        self.cache = InversionCache(cache_dir)
        self.model_key = model_key(profile.model_id, profile.unet)
        self.progress = progress
        self._loaded: dict[str, DeltaNet] = {}

    @property
    def device(self) -> torch.device:
        return self.hspace.device

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
        return self.cache.invert(self.profile.unet, x0, self.timesteps, self.profile.schedule, model=self.model_key,
                                 progress=self.progress)

    def directions(self, directions, *, allow_other_model: bool = False) -> list[tuple[Callable, float]]:
        """Normalise ``directions`` (a list of ``(direction, strength)`` pairs, or one direction at strength 1)
        into ``(f, c)`` pairs, loading checkpoint folders once."""
        if directions is None:
            return []
        if isinstance(directions, (str, os.PathLike, torch.Tensor)) or callable(directions):
            directions = [directions]
        elif (isinstance(directions, tuple) and len(directions) == 2 and isinstance(directions[1], (int, float))
              and not isinstance(directions[1], bool)):
            directions = [directions]  # one (direction, strength) pair
        elif not isinstance(directions, (list, tuple)):
            raise ValueError(f"directions: expected a list of (direction, strength) pairs, got {type(directions).__name__}")
        out = []
        for item in directions:
            d, c = (item, 1.0) if not isinstance(item, (list, tuple)) else (tuple(item) + (1.0,))[:2]
            what = str(d) if isinstance(d, (str, os.PathLike)) else type(d).__name__
            c = _check_strength(c, what)
            if isinstance(d, (str, os.PathLike)):
                key = str(Path(d).expanduser().resolve())
                if key not in self._loaded:
                    self._loaded[key] = DeltaNet.load(d, h_shape=self.h_shape, model_id=self.profile.model_id,
                                                      allow_other_model=allow_other_model)
                d = self._loaded[key]
            f = as_direction(d, h_shape=self.h_shape, model_id=self.profile.model_id, device=self.device,
                             dtype=self.hspace.dtype, allow_other_model=allow_other_model)
            out.append((f, c, d))
        return out

    def delta_h(self, h: torch.Tensor, t, directions) -> torch.Tensor:
        """Δh_t = Σ_i c_i f_t^i(h_t) for the given directions (see :func:`combine_delta_h`)."""
        dirs = self.directions(directions)
        with torch.no_grad():
            return combine_delta_h(h, t, [(f, c) for f, c, _ in dirs])

    def _intervals(self, t_edit, t_boost, dirs) -> tuple[int, int]:
        meta = [d.metadata for _, _, d in dirs if isinstance(d, DeltaNet)]
        if t_edit is None:
            t_edit = self.t_edit if self.t_edit is not None else next(
                (m["t_edit"] for m in meta if m.get("t_edit") is not None), None)
        if t_boost is None:
            t_boost = self.t_boost if self.t_boost is not None else next(
                (m["t_boost"] for m in meta if m.get("t_boost") is not None), None)
        if t_edit is None or t_boost is None:
            raise ValueError("t_edit, t_boost: not given, and no direction checkpoint carries them; pass them "
                             "(e.g. from asyrp intervals, or asyrp_lib.train.find_intervals)")
        return check_intervals(t_edit, t_boost, self.timesteps, self.profile.schedule.num_train_timesteps)

    def edit(self, images: torch.Tensor, directions=None, *, t_edit: int | None = None, t_boost: int | None = None,
             eta_boost: float = 1.0, generator: torch.Generator | None = None, reconstruct: bool = True,
             keep_previews: bool = False, allow_other_model: bool = False) -> EditResult:
        """Edit ``images`` (N, 3, S, S) in [-1, 1] with ``directions`` = [(direction, strength), …] (eq. 6).

        Asymmetric steps with Δh = Σ c_i f_t^i(h_t) for t ≥ t_edit, plain DDIM down to t_boost, then steps
        with η = ``eta_boost`` (noise from ``generator``; the reconstruction gets the same noise).
        """
        dirs = self.directions(directions, allow_other_model=allow_other_model)
        t_edit, t_boost = self._intervals(t_edit, t_boost, dirs)
        if not 0.0 <= float(eta_boost) <= 1.0:
            raise ValueError(f"eta_boost: expected a value in [0, 1], got {eta_boost}")
        x0 = self._check_images(images)
        x_T = self.invert(x0)
        edited, recon, previews = self._generate(x_T, [(f, c) for f, c, _ in dirs], t_edit, t_boost,
                                                 float(eta_boost), generator, reconstruct, keep_previews)
        return EditResult(edited=edited, reconstruction=recon, source=x0, x_T=x_T, t_edit=t_edit, t_boost=t_boost,
                          timesteps=list(self.timesteps), strengths=[c for _, c, _ in dirs], previews=previews)

    @torch.no_grad()
    def _generate(self, x_T, dirs, t_edit, t_boost, eta_boost, generator, reconstruct, keep_previews):
        sched, hs = self.profile.schedule, self.hspace
        n = x_T.shape[0]
        # rows: the edited branch, then (optionally) the reconstruction, run as one batch
        x = torch.cat([x_T, x_T]) if reconstruct else x_T
        previews = []
        steps = list(zip(self.timesteps, ddim.previous_timesteps(self.timesteps)))
        for t, t_prev in progress_bar(steps, enabled=self.progress, desc="Asyrp editing"):
            a_t, a_prev = sched.alpha(t), sched.alpha(t_prev)
            enc = hs.encode(x, t)
            if t >= t_edit:
                # ONE encoder pass; one decoder pass over [h_e + Δh ; h (all rows) ] — the edited rows are
                # decoded twice (with and without Δh), the reconstruction rows once.
                h = enc.h
                delta = combine_delta_h(h[:n], t, dirs)
                ext = Encoded(h=torch.cat([h, h[:n]]), emb=torch.cat([enc.emb, enc.emb[:n]]),
                              skips=tuple(torch.cat([s, s[:n]]) for s in enc.skips),
                              timesteps=torch.cat([enc.timesteps, enc.timesteps[:n]]),
                              x_t=torch.cat([enc.x_t, enc.x_t[:n]]))
                out = hs.decode(ext, torch.cat([h[:n] + delta, h[n:], h[:n]]))
                eps_edit, eps = out[:n], out[n:-n] if reconstruct else None
                eps_plain = out[-n:]
                step = ddim.ddim_step(x[:n], eps_edit, a_t, a_prev, eps_direction=eps_plain)
                x_e = step.x_prev
                if keep_previews:
                    previews.append((t, step.pred_x0.clamp(-1, 1).cpu()))
                if reconstruct:
                    x = torch.cat([x_e, ddim.ddim_step(x[n:], eps, a_t, a_prev).x_prev])
                else:
                    x = x_e
                continue
            eps = hs.decode(enc)
            eta, noise = 0.0, None
            if t < t_boost and eta_boost > 0:
                eta = eta_boost
                z = torch.randn(x_T.shape, generator=generator, dtype=x.dtype,
                                device=generator.device if generator is not None else "cpu").to(x.device)
                noise = torch.cat([z, z]) if reconstruct else z  # the same noise for both branches
            x = ddim.ddim_step(x, eps, a_t, a_prev, eta=eta, noise=noise).x_prev
        x = x.clamp(-1, 1)
        return x[:n], (x[n:] if reconstruct else None), previews
