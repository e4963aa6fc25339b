r"""Editing in h-space with one global Δh, applied by the asymmetric reverse process (eq. 4/5).

The edited noise prediction changes only the bottleneck h_t of the U-Net; every skip connection
stays as it was (course eq. 5):

    ε^θ(x_t | Δh) = decoder(h_t + Δh, skips(x_t))

and the asymmetric step (eq. 4, :func:`asyrp_lib.core.process.asymmetric_step`) puts the edit in the
*predicted x0* term only, for t ≥ t_edit; plain DDIM follows (eq. 6, :mod:`asyrp_lib.core.process`).

The *symmetric* step feeds the edited ε to both terms; its changes in P_t and D_t largely cancel
(see :mod:`asyrp_lib.core.naive`). Here Δh is a single tensor of h's shape shared by all images and all
steps of the editing interval [T, t_edit] (or one tensor per step, ``per_timestep=True``), optimised
per step t ≥ t_edit and batched over images with the loss every edit of the library uses
(:mod:`asyrp_lib.core.loss`):

    L_t = λ_clip · L_direction(P_t^edit, x_0)  +  λ_L1 · w_text · |P_t^edit - P_t^source|_1

where P_t^edit = P_t(ε^θ(x_t | Δh)) (ε with and without the edit from ONE encoder pass,
:meth:`asyrp_lib.core.hspace.HSpaceUNet.eps`), x_0 the source image, and x_T its deterministic inversion
(η = 0), computed once. The optimiser steps after every timestep; x_t follows the edited trajectory
(:func:`asyrp_lib.core.process.reverse_process`, the one implementation of eq. 6).

=========================  ===========================  =========================================
name here                  symbol                       where
=========================  ===========================  =========================================
``delta_h``                Δh                           Asyrp §3.2, course eq. 5
``t_edit``                 t_edit                       the edit acts for t ≥ t_edit (eq. 6)
``asymmetric``             edit in P_t only             course eq. 4/5
``lambda_l1``              λ_L1                         reference implementation's L1 weight
=========================  ===========================  =========================================

:func:`optimise_edit` optimises the parameters of any edit of :mod:`asyrp_lib.core.process` (a Δh here, the Δε
of :mod:`asyrp_lib.core.naive` there) with that loss.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import torch

from . import ddim
from .._utils import check_images, check_int, check_number, check_timestep, grouped_options, progress_bar
from .hspace import h_shape
from .loss import AsyrpLoss, loss_step, resolve_loss
from .process import DeltaH, reverse_process, run_process

__all__ = [
    "DeltaHResult",
    "EditOutput",
    "optimize_global_delta_h",
    "apply_delta_h",
    "edit_timesteps",
    "make_clip_loss",
    "optimise_edit",
    "schedule_steps",
    "as_model_input",
    "prepare_edit",
    "EditProblem",
    "Optimisation",
]


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
    l1_losses: list[float]  # mean L1(P_t^edit, P_t^source) per epoch
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
    t_edit = check_timestep(t_edit, "t_edit", num_train_timesteps)
    ts = [t for t in timesteps if t >= t_edit]
    if not ts:
        raise ValueError(f"t_edit: {t_edit} is above every sampling timestep (the first is {max(timesteps)}), "
                         f"so nothing would be edited; choose t_edit ≤ {max(timesteps)}")
    return ts


def schedule_steps(profile, n_steps) -> list[int]:
    """The DDIM timesteps for ``n_steps`` steps (default: the profile's), on the profile's schedule."""
    n = profile.default_steps if n_steps is None else n_steps
    T = profile.schedule.num_train_timesteps
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= T:
        raise ValueError(f"n_steps: expected an integer in [1, {T}] (DDIM steps), got {n_steps!r}")
    return ddim.timesteps(int(n), T)


def as_model_input(profile, x, name: str, value_range=(-1.0, 1.0)) -> torch.Tensor:
    """``x`` checked (N ≥ 1 images of 3 channels) and moved to the U-Net's device and dtype."""
    check_images(x, name, value_range=value_range, channels=3)
    if x.shape[0] == 0:
        raise ValueError(f"{name}: expected at least one image, got shape {tuple(x.shape)}")
    p = next(profile.unet.parameters())
    return x.detach().to(device=p.device, dtype=p.dtype)


def make_clip_loss(profile, source: str, target: str, clip_loss=None):
    """The directional CLIP loss (eq. 3) for a prompt pair on the profile's CLIP, or ``clip_loss`` if given.

    Identical prompts are a ``ValueError`` from :class:`asyrp_lib.core.clip_loss.DirectionalCLIPLoss`.
    """
    if clip_loss is not None:
        return clip_loss
    from .clip_loss import DirectionalCLIPLoss

    return DirectionalCLIPLoss(profile.clip, source, target)


# --------------------------------------------------------------------------------------------
# Optimising an edit with the Asyrp loss
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Optimisation:
    """How an optimised edit (global Δh, Δε) learns: ``epochs`` (passes over the images and the edit steps),
    ``lr`` (Adam's step size, one step per batch and timestep), ``loss`` (the settings of the loss,
    :class:`~asyrp_lib.core.loss.AsyrpLoss`; default its defaults), ``lambda_l1`` (replaces the loss's λ_L1 when
    given), ``clip_loss`` (a ready :class:`~asyrp_lib.core.clip_loss.DirectionalCLIPLoss`; default built from the
    prompts), ``batch_size`` (images per step; default all), ``asymmetric`` (train along the asymmetric trajectory,
    eq. 4–5, or the symmetric one)."""

    epochs: int = 10
    lr: float = 0.05
    loss: AsyrpLoss | None = None
    lambda_l1: float | None = None
    clip_loss: object = None
    batch_size: int | None = None
    asymmetric: bool = True


@dataclass
class EditProblem:
    """What an optimised edit starts from, checked: the images, the loss and the schedule."""

    x0: torch.Tensor  # on the model's device and dtype
    clip_loss: object  # DirectionalCLIPLoss
    loss: AsyrpLoss
    timesteps: list[int]
    edit_timesteps: list[int]
    t_edit: int = 0


def prepare_edit(profile, x0, source: str, target: str, *, t_edit: int, n_steps, optim: Optimisation) -> EditProblem:
    """Check the arguments shared by every optimised edit (global Δh, Δε) and build its loss and schedule."""
    check_int(optim.epochs, "epochs")
    check_number(optim.lr, "lr", positive=True)
    if optim.batch_size is not None:
        check_int(optim.batch_size, "batch_size")
    ts = schedule_steps(profile, n_steps)
    return EditProblem(x0=as_model_input(profile, x0, "x0"),
                       clip_loss=make_clip_loss(profile, source, target, optim.clip_loss),
                       loss=resolve_loss(optim.loss, optim.lambda_l1), timesteps=ts,
                       edit_timesteps=edit_timesteps(ts, t_edit, profile.schedule.num_train_timesteps),
                       t_edit=int(t_edit))


def optimise_edit(profile, problem: EditProblem, x_T: torch.Tensor, edit, params: Sequence[torch.Tensor],
                  optim: Optimisation, *, progress: bool = True, desc: str = "optimising the edit") -> dict:
    """Optimise ``params`` (those of ``edit``, an edit of :mod:`asyrp_lib.core.process`) on ``problem`` (from
    :func:`prepare_edit`, whose loss it takes) as ``optim`` says, one Adam step per batch and edit step; returns
    the per-epoch mean losses."""
    x0, loss, clip_loss = problem.x0, problem.loss, problem.clip_loss
    opt = torch.optim.Adam(list(params), lr=optim.lr)
    n = x0.shape[0]
    bs = n if optim.batch_size is None else int(optim.batch_size)
    with torch.no_grad():
        src_embeds = torch.cat([clip_loss.encoder.encode_image(x0[i:i + bs]) for i in range(0, n, bs)])
    hist = {"losses": [], "clip_losses": [], "l1_losses": []}
    for _ in (bar := progress_bar(range(optim.epochs), enabled=progress, desc=desc)):
        sums, count = {"loss": 0.0, "clip": 0.0, "l1": 0.0}, 0
        for b in range(0, n, bs):
            for step in reverse_process(profile.hspace, x_T[b:b + bs], problem.timesteps, profile.schedule, edit=edit,
                                        t_edit=problem.t_edit, asymmetric=optim.asymmetric, grad=True,
                                        until_edit_done=True, reconstruct=loss.needs_reconstruction):
                if step.phase == "done":
                    break
                values = loss_step(step, loss, clip_loss, src_embeds[b:b + bs], opt, params, where=f"t = {step.t}")
                for k in sums:
                    sums[k] += values[k] * step.n
                count += step.n
        for key, k in (("losses", "loss"), ("clip_losses", "clip"), ("l1_losses", "l1")):
            hist[key].append(sums[k] / count)
        if progress and hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{hist['losses'][-1]:.4f}")
    return hist


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


def optimize_global_delta_h(profile, x0: torch.Tensor, source: str, target: str, *, t_edit: int,
                            n_steps: int | None = None, optim: Optimisation | None = None, **keywords) -> DeltaHResult:
    """Optimise one Δh of h's shape (or one per edit step) that edits every image of ``x0`` from source to target.

    ``profile``: a :class:`asyrp_lib.models.profiles.Profile` (``unet``, ``schedule``, ``hspace``, ``clip``);
    ``x0``: source images (N, 3, H, W) in [-1, 1]; ``t_edit``: the edit acts for t ≥ t_edit (eq. 6);
    ``n_steps``: DDIM steps (default: the profile's); ``optim``: how it learns (:class:`Optimisation`: epochs,
    lr, loss, lambda_l1, clip_loss, batch_size, asymmetric), each of whose fields may also be given by name
    (``epochs=3, lr=0.1``). Also by name: ``per_timestep`` (one Δh per edit step) and ``progress``.
    """
    g = grouped_options("optimize_global_delta_h", keywords, {"optim": (Optimisation, optim)},
                        also=("per_timestep", "progress"))
    optim, per_timestep, progress = g["optim"], g.get("per_timestep", False), g.get("progress", True)
    asymmetric = optim.asymmetric
    t0 = time.perf_counter()
    pb = prepare_edit(profile, x0, source, target, t_edit=t_edit, n_steps=n_steps, optim=optim)
    x0, ts, ets = pb.x0, pb.timesteps, pb.edit_timesteps
    shape = h_shape(profile.unet, x0.shape[-1])
    delta_h = torch.zeros((len(ets) if per_timestep else 1, *shape), device=x0.device, dtype=x0.dtype,
                          requires_grad=True)
    x_T = ddim.invert(profile.unet, x0, ts, profile.schedule, progress=progress,
                      refine=getattr(profile, "invert_refine", 0))
    t1 = time.perf_counter()
    hist = optimise_edit(profile, pb, x_T, DeltaH(delta_h), [delta_h], optim, progress=progress,
                         desc="optimising Δh")
    t2 = time.perf_counter()
    dh = delta_h.detach()
    images, _, _ = run_process(profile.hspace, x_T, ts, profile.schedule, edit=DeltaH(dh), t_edit=t_edit,
                               asymmetric=asymmetric, progress=progress, desc="editing")
    return DeltaHResult(delta_h=dh if per_timestep else dh[0], images=images, x_T=x_T, timesteps=ts,
                        edit_timesteps=ets, t_edit=int(t_edit), asymmetric=asymmetric, seconds=time.perf_counter() - t0,
                        optimise_seconds=t2 - t1, **hist)


def apply_delta_h(profile, x_T: torch.Tensor, delta_h: torch.Tensor, *, t_edit: int, n_steps: int | None = None,
                  strength: float = 1.0, progress: bool = True, **keywords) -> EditOutput:
    """Run the reverse process from ``x_T`` with h + strength·Δh for t ≥ t_edit, plain DDIM (η = 0) after.

    ``asymmetric=True``: the edited ε feeds P_t only (eq. 4/5, ``ddim_step(x, ε_edit, a, a_prev,
    eps_direction=ε)``); ``False``: both P_t and D_t. ``x_T``: latents, e.g. ``DeltaHResult.x_T`` or
    ``ddim.invert(profile.unet, x0, ddim.timesteps(n_steps), profile.schedule)`` with the same ``n_steps``.
    ``delta_h``: h's shape, or one row per edit step. A zero Δh reproduces ``ddim.sample``. By name:
    ``asymmetric`` (default ``True``) and ``keep_previews`` (P_t of every edit step in ``pred_x0``).
    """
    g = grouped_options("apply_delta_h", keywords, {}, also=("asymmetric", "keep_previews"))
    asymmetric, keep_previews = g.get("asymmetric", True), g.get("keep_previews", False)
    t0 = time.perf_counter()
    x_T = as_model_input(profile, x_T, "x_T", value_range=None)
    if not isinstance(strength, (int, float)) or isinstance(strength, bool) or not torch.isfinite(
            torch.tensor(float(strength))):
        raise ValueError(f"strength: expected a finite number (negative reverses the edit), got {strength!r}")
    ts = schedule_steps(profile, n_steps)
    ets = edit_timesteps(ts, t_edit, profile.schedule.num_train_timesteps)
    dh = _check_delta_h(delta_h, profile, x_T.shape[-1], len(ets)).to(device=x_T.device, dtype=x_T.dtype)
    images, _, previews = run_process(profile.hspace, x_T, ts, profile.schedule, edit=DeltaH(dh, float(strength)),
                                      t_edit=t_edit, asymmetric=asymmetric, keep_previews=keep_previews,
                                      progress=progress, desc="editing")
    return EditOutput(images=images, x_T=x_T, timesteps=ts, edit_timesteps=ets, t_edit=int(t_edit),
                      asymmetric=asymmetric, seconds=time.perf_counter() - t0, pred_x0=[p for _, p in previews])
