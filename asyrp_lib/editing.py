r"""Editing in h-space with one global Δh, applied by the asymmetric reverse process (eq. 4/5).

The edited noise prediction changes only the bottleneck h_t of the U-Net; every skip connection
stays as it was (course eq. 5):

    ε^θ(x_t | Δh) = decoder(h_t + Δh, skips(x_t))

and the asymmetric step (eq. 4/5) puts the edit in the *predicted x0* term only:

    x_{t-1} = sqrt(ᾱ_{t-1}) · P_t(ε^θ(x_t | Δh)) + D_t(ε^θ(x_t))          for t ≥ t_edit
    x_{t-1} = sqrt(ᾱ_{t-1}) · P_t(ε^θ(x_t))      + D_t(ε^θ(x_t))          for t < t_edit (plain DDIM)

The *symmetric* step feeds the edited ε to both terms; its changes in P_t and D_t largely cancel
(see :mod:`asyrp_lib.naive`). Here Δh is a single tensor of h's shape shared by all images and all
steps of the editing interval [T, t_edit] (or one tensor per step, ``per_timestep=True``), optimised
with the loss of the reference implementation, per step t ≥ t_edit and batched over images:

    L_t = L_direction(P_t^edit, x_0)  +  λ_L1 · |P_t^edit - P_t|_1          (eq. 3 plus an L1 term)

where P_t^edit = P_t(ε^θ(x_t | Δh)), P_t = P_t(ε^θ(x_t)) (both from ONE encoder pass,
:meth:`asyrp_lib.hspace.HSpaceUNet.eps`), x_0 the source image, and x_T its deterministic inversion
(η = 0), computed once. The optimiser steps after every timestep; x_t follows the edited trajectory.

=========================  ===========================  =========================================
name here                  symbol                       where
=========================  ===========================  =========================================
``delta_h``                Δh                           Asyrp §3.2, course eq. 5
``t_edit``                 t_edit                       the edit acts for t ≥ t_edit (eq. 6)
``asymmetric``             edit in P_t only             course eq. 4/5
``lambda_l1``              λ_L1                         reference implementation's L1 weight
=========================  ===========================  =========================================

The loop itself (:func:`optimise_edit`, :func:`run_edit`) takes any "ε pair" function
``(x_t, t, i) -> (ε_edit, ε)``, so the ε-shift of :mod:`asyrp_lib.naive` reuses it.
"""
from __future__ import annotations

import numbers
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from . import ddim
from ._utils import check_images, progress_bar
from .hspace import h_shape

__all__ = [
    "DeltaHResult",
    "EditOutput",
    "optimize_global_delta_h",
    "apply_delta_h",
    "edit_timesteps",
    "make_clip_loss",
    "optimise_edit",
    "run_edit",
]

EpsPair = Callable[[torch.Tensor, int, int], tuple]


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------
@dataclass
class DeltaHResult:
    """A global Δh optimised on a set of images."""

    delta_h: torch.Tensor  # (C, H, W); (K, C, H, W) with per_timestep (K = len(edit_timesteps))
    images: torch.Tensor  # the training images edited with delta_h (as trained: asymmetric or not)
    x_T: torch.Tensor  # their deterministic inversions, reusable with apply_delta_h
    timesteps: list[int]  # the whole DDIM schedule, descending
    edit_timesteps: list[int]  # the steps with t ≥ t_edit, where the edit acts
    t_edit: int
    asymmetric: bool
    losses: list[float]  # mean total loss per epoch
    clip_losses: list[float]  # mean directional loss (eq. 3) per epoch
    l1_losses: list[float]  # mean L1(P_t^edit, P_t) per epoch
    seconds: float  # wall time of the whole call (inversion, optimisation, final edit)
    optimise_seconds: float = 0.0  # of which the optimisation loop


@dataclass
class EditOutput:
    """Images made by running the reverse process with an edit."""

    images: torch.Tensor  # x_0 of the edited process (not clamped)
    x_T: torch.Tensor  # where it started
    timesteps: list[int]
    edit_timesteps: list[int]
    t_edit: int
    asymmetric: bool
    seconds: float
    pred_x0: list = field(default_factory=list)  # P_t^edit at each edit step (only with keep_previews)


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------
def edit_timesteps(timesteps: Sequence[int], t_edit: int, num_train_timesteps: int = 1000) -> list[int]:
    """The steps of a descending schedule where the edit acts: t ≥ t_edit. Raises if there are none."""
    if isinstance(t_edit, torch.Tensor) and t_edit.numel() == 1 and not t_edit.is_floating_point():
        t_edit = int(t_edit)
    if isinstance(t_edit, bool) or not isinstance(t_edit, numbers.Integral):
        raise ValueError(f"t_edit: expected an integer timestep in [0, {num_train_timesteps - 1}], got {t_edit!r}")
    t_edit = int(t_edit)
    if not 0 <= t_edit < num_train_timesteps:
        raise ValueError(f"t_edit: expected an integer timestep in [0, {num_train_timesteps - 1}], got {t_edit}")
    ts = [t for t in timesteps if t >= t_edit]
    if not ts:
        raise ValueError(f"t_edit: {t_edit} is above every sampling timestep (the first is {max(timesteps)}), "
                         f"so nothing would be edited; choose t_edit ≤ {max(timesteps)}")
    return ts


def _schedule_steps(profile, n_steps) -> list[int]:
    n = profile.default_steps if n_steps is None else n_steps
    T = profile.schedule.num_train_timesteps
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or not 1 <= n <= T:
        raise ValueError(f"n_steps: expected an integer in [1, {T}] (DDIM steps), got {n_steps!r}")
    return ddim.timesteps(int(n), T)


def _images(profile, x, name: str, value_range=(-1.0, 1.0)) -> torch.Tensor:
    check_images(x, name, value_range=value_range, channels=3)
    if x.shape[0] == 0:
        raise ValueError(f"{name}: expected at least one image, got shape {tuple(x.shape)}")
    p = next(profile.unet.parameters())
    return x.detach().to(device=p.device, dtype=p.dtype)


def make_clip_loss(profile, source: str, target: str, clip_loss=None):
    """The directional CLIP loss (eq. 3) for a prompt pair on the profile's CLIP, or ``clip_loss`` if given.

    Identical prompts are a ``ValueError`` from :class:`asyrp_lib.clip.DirectionalCLIPLoss`.
    """
    if clip_loss is not None:
        return clip_loss
    from .clip import DirectionalCLIPLoss

    return DirectionalCLIPLoss(profile.clip, source, target)


def _check_hparams(**kw) -> None:
    for name, (value, kind) in kw.items():
        if kind == "pos_int":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        elif kind == "pos":
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise ValueError(f"{name}: expected a positive number, got {value!r}")
        elif kind == "nonneg":
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
                raise ValueError(f"{name}: expected a number ≥ 0, got {value!r}")


# --------------------------------------------------------------------------------------------
# The shared loop: optimise an edit of ε on [T, t_edit], and run the edited reverse process
# --------------------------------------------------------------------------------------------
def _step(x, eps_edit, eps, a_t, a_prev, asymmetric: bool) -> torch.Tensor:
    """Eq. 4 (asymmetric: ε_edit in P_t, ε in D_t) or the symmetric step (ε_edit in both)."""
    return ddim.ddim_step(x, eps_edit, a_t, a_prev, eps_direction=eps if asymmetric else None).x_prev


def optimise_edit(profile, x0: torch.Tensor, x_T: torch.Tensor, eps_pair: EpsPair, params: Sequence[torch.Tensor], *,
                  clip_loss, timesteps: Sequence[int], t_edit: int, epochs: int, lr: float, lambda_l1: float,
                  asymmetric: bool = True, batch_size: int | None = None, progress: bool = True,
                  desc: str = "optimising the edit") -> dict:
    """Optimise ``params`` so that P_t(ε_edit) moves along the text direction, for every step t ≥ t_edit.

    ``eps_pair(x_t, t, i)`` → ``(ε_edit, ε)`` (``i``: index of the edit step) must depend on ``params``.
    Per step and batch: L_t = L_direction(P_t^edit, x0) + λ_L1 · mean|P_t^edit - P_t|, then one Adam step;
    x_t advances with the (detached) edited step, asymmetric or symmetric. Returns per-epoch mean losses.
    """
    ts = list(timesteps)
    ets = edit_timesteps(ts, t_edit, profile.schedule.num_train_timesteps)
    pairs = list(zip(ets, ddim.previous_timesteps(ts)[: len(ets)]))
    opt = torch.optim.Adam(list(params), lr=lr)
    n = x0.shape[0]
    bs = n if batch_size is None else int(batch_size)
    with torch.no_grad():
        src_embeds = torch.cat([clip_loss.encoder.encode_image(x0[i:i + bs]) for i in range(0, n, bs)])
    hist = {"losses": [], "clip_losses": [], "l1_losses": []}
    bar = progress_bar(range(epochs), enabled=progress, desc=desc)
    for _ in bar:
        tot = {"losses": 0.0, "clip_losses": 0.0, "l1_losses": 0.0}
        count = 0
        for start in range(0, n, bs):
            x = x_T[start:start + bs]
            for i, (t, t_prev) in enumerate(pairs):
                a_t = profile.schedule.alpha(t).to(x.device)
                a_prev = profile.schedule.alpha(t_prev).to(x.device)
                eps_edit, eps = eps_pair(x, t, i)
                eps = eps.detach()
                p_edit = ddim.predicted_x0(x, eps_edit, a_t)
                p_orig = ddim.predicted_x0(x, eps, a_t)
                l_clip = clip_loss(p_edit, source_embeds=src_embeds[start:start + bs]).mean()
                l_l1 = (p_edit - p_orig).abs().mean()
                loss = l_clip + lambda_l1 * l_l1
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"the loss became {loss.item()} at t={t}; lower lr (now {lr})")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                with torch.no_grad():
                    x = _step(x, eps_edit.detach(), eps, a_t, a_prev, asymmetric)
                w = x.shape[0]
                tot["losses"] += loss.item() * w
                tot["clip_losses"] += l_clip.item() * w
                tot["l1_losses"] += l_l1.item() * w
                count += w
        for k in hist:
            hist[k].append(tot[k] / count)
        if progress and hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{hist['losses'][-1]:.4f}")
    return hist


@torch.no_grad()
def run_edit(profile, x_T: torch.Tensor, eps_pair: EpsPair, *, timesteps: Sequence[int], t_edit: int,
             asymmetric: bool = True, progress: bool = True, keep_previews: bool = False,
             desc: str = "editing") -> tuple[torch.Tensor, list]:
    """The reverse process from x_T with the edit for t ≥ t_edit (eq. 4 or symmetric), plain DDIM after (η = 0).

    Returns (x_0, the P_t^edit previews of the edit steps if ``keep_previews``).
    """
    ts = list(timesteps)
    ets = edit_timesteps(ts, t_edit, profile.schedule.num_train_timesteps)
    x = x_T
    previews = []
    for i, (t, t_prev) in enumerate(progress_bar(list(zip(ts, ddim.previous_timesteps(ts))), enabled=progress,
                                                 desc=desc)):
        a_t = profile.schedule.alpha(t).to(x.device)
        a_prev = profile.schedule.alpha(t_prev).to(x.device)
        if i < len(ets):
            eps_edit, eps = eps_pair(x, t, i)
            if keep_previews:
                previews.append(ddim.predicted_x0(x, eps_edit, a_t).cpu())
            x = _step(x, eps_edit, eps, a_t, a_prev, asymmetric)
        else:
            x = ddim.ddim_step(x, ddim.model_eps(profile.unet, x, t), a_t, a_prev).x_prev
    return x, previews


# --------------------------------------------------------------------------------------------
# Δh
# --------------------------------------------------------------------------------------------
def _check_delta_h(delta_h, profile, image_size: int, n_edit: int) -> torch.Tensor:
    shape = tuple(h_shape(profile.unet, image_size))
    if not isinstance(delta_h, torch.Tensor):
        raise ValueError(f"delta_h: expected a tensor of h's shape {shape}, got {type(delta_h).__name__}")
    if tuple(delta_h.shape) == shape:
        delta_h = delta_h.unsqueeze(0)
    if delta_h.dim() != 4 or tuple(delta_h.shape[1:]) != shape or delta_h.shape[0] not in (1, n_edit):
        raise ValueError(f"delta_h: expected shape {shape} (global) or ({n_edit}, {', '.join(map(str, shape))}) "
                         f"(one per edit step), got {tuple(delta_h.shape)}")
    if not torch.isfinite(delta_h).all():
        raise ValueError("delta_h: contains NaN or infinite values")
    return delta_h


def _delta_h_pair(profile, delta_h: torch.Tensor, strength: float = 1.0) -> EpsPair:
    """ε pair from the shared-encoder pass: (ε(x_t | h + c·Δh_i), ε(x_t)); Δh rows broadcast over images."""
    hs = profile.hspace

    def pair(x, t, i):
        dh = delta_h[i if delta_h.shape[0] > 1 else 0].unsqueeze(0)
        return hs.eps(x, t, strength * dh)

    return pair


def optimize_global_delta_h(
    profile,
    x0: torch.Tensor,
    source: str,
    target: str,
    *,
    t_edit: int,
    n_steps: int | None = None,
    epochs: int = 10,
    lr: float = 0.05,
    lambda_l1: float = 3.0,
    per_timestep: bool = False,
    asymmetric: bool = True,
    batch_size: int | None = None,
    clip_loss=None,
    progress: bool = True,
) -> DeltaHResult:
    """Optimise one Δh of h's shape (or one per edit step) that edits every image of ``x0`` from source to target.

    ``profile``: a :class:`asyrp_lib.profiles.Profile` (``unet``, ``schedule``, ``hspace``, ``clip``);
    ``x0``: source images (N, 3, H, W) in [-1, 1]; ``t_edit``: the edit acts for t ≥ t_edit (eq. 6);
    ``n_steps``: DDIM steps (default: the profile's); ``epochs``: passes over the images and the edit steps,
    with one Adam step (``lr``) per batch and timestep; ``lambda_l1``: weight of L1(P_t^edit, P_t);
    ``asymmetric``: train along the asymmetric (eq. 4/5) or the symmetric trajectory; ``clip_loss``: a
    ready :class:`asyrp_lib.clip.DirectionalCLIPLoss` (default: built from the prompts).
    """
    t0 = time.perf_counter()
    _check_hparams(epochs=(epochs, "pos_int"), lr=(lr, "pos"), lambda_l1=(lambda_l1, "nonneg"))
    if batch_size is not None:
        _check_hparams(batch_size=(batch_size, "pos_int"))
    x0 = _images(profile, x0, "x0")
    loss_fn = make_clip_loss(profile, source, target, clip_loss)
    ts = _schedule_steps(profile, n_steps)
    ets = edit_timesteps(ts, t_edit, profile.schedule.num_train_timesteps)
    shape = h_shape(profile.unet, x0.shape[-1])
    delta_h = torch.zeros((len(ets) if per_timestep else 1, *shape), device=x0.device, dtype=x0.dtype,
                          requires_grad=True)
    x_T = ddim.invert(profile.unet, x0, ts, profile.schedule, progress=progress)
    t1 = time.perf_counter()
    hist = optimise_edit(profile, x0, x_T, _delta_h_pair(profile, delta_h), [delta_h], clip_loss=loss_fn,
                         timesteps=ts, t_edit=t_edit, epochs=epochs, lr=lr, lambda_l1=lambda_l1,
                         asymmetric=asymmetric, batch_size=batch_size, progress=progress, desc="optimising Δh")
    t2 = time.perf_counter()
    dh = delta_h.detach()
    images, _ = run_edit(profile, x_T, _delta_h_pair(profile, dh), timesteps=ts, t_edit=t_edit,
                         asymmetric=asymmetric, progress=progress)
    return DeltaHResult(delta_h=dh if per_timestep else dh[0], images=images, x_T=x_T, timesteps=ts,
                        edit_timesteps=ets, t_edit=int(t_edit), asymmetric=asymmetric, seconds=time.perf_counter() - t0,
                        optimise_seconds=t2 - t1, **hist)


def apply_delta_h(
    profile,
    x_T: torch.Tensor,
    delta_h: torch.Tensor,
    *,
    t_edit: int,
    n_steps: int | None = None,
    asymmetric: bool = True,
    strength: float = 1.0,
    keep_previews: bool = False,
    progress: bool = True,
) -> EditOutput:
    """Run the reverse process from ``x_T`` with h + strength·Δh for t ≥ t_edit, plain DDIM (η = 0) after.

    ``asymmetric=True``: the edited ε feeds P_t only (eq. 4/5, ``ddim_step(x, ε_edit, a, a_prev,
    eps_direction=ε)``); ``False``: both P_t and D_t. ``x_T``: latents, e.g. ``DeltaHResult.x_T`` or
    ``ddim.invert(profile.unet, x0, ddim.timesteps(n_steps), profile.schedule)`` with the same ``n_steps``.
    ``delta_h``: h's shape, or one row per edit step. A zero Δh reproduces ``ddim.sample``.
    """
    t0 = time.perf_counter()
    x_T = _images(profile, x_T, "x_T", value_range=None)
    if not isinstance(strength, (int, float)) or isinstance(strength, bool) or not torch.isfinite(
            torch.tensor(float(strength))):
        raise ValueError(f"strength: expected a finite number (negative reverses the edit), got {strength!r}")
    ts = _schedule_steps(profile, n_steps)
    ets = edit_timesteps(ts, t_edit, profile.schedule.num_train_timesteps)
    dh = _check_delta_h(delta_h, profile, x_T.shape[-1], len(ets)).to(device=x_T.device, dtype=x_T.dtype)
    images, previews = run_edit(profile, x_T, _delta_h_pair(profile, dh, float(strength)), timesteps=ts,
                                t_edit=t_edit, asymmetric=asymmetric, progress=progress, keep_previews=keep_previews)
    return EditOutput(images=images, x_T=x_T, timesteps=ts, edit_timesteps=ets, t_edit=int(t_edit),
                      asymmetric=asymmetric, seconds=time.perf_counter() - t0, pred_x0=previews)
