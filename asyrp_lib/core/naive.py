r"""The two obvious edits that fail (course notebook 04).

**(a) Optimising x_T.** Invert the image to x_T (η = 0), then move x_T so that the sampled image
x_0 = S(x_T) goes along the text direction: minimise L_direction(S(x_T), x) (eq. 3), optionally plus
λ_L1 · |S(x_T) - x|_1 and λ_LPIPS · LPIPS(S(x_T), x), by backpropagating through a short deterministic
DDIM sampler S. With ``torch.utils.checkpoint`` around each step only the step inputs are kept, so
memory stays about one U-Net pass. The sampler is a fixed, highly non-linear map: x_T has no
semantic axes, and the edited images drift or distort.

**(b) Shifting ε.** Add Δε to the noise prediction in *both* terms of the DDIM step (eq. 2):

    x_{t-1}(ε + Δε) - x_{t-1}(ε) = sqrt(ᾱ_{t-1}) · ΔP_t + ΔD_t

    sqrt(ᾱ_{t-1}) · ΔP_t = - sqrt(ᾱ_{t-1}) · sqrt(1 - ᾱ_t) / sqrt(ᾱ_t) · Δε      (P_t, eq. 2)
    ΔD_t                 =   sqrt(1 - ᾱ_{t-1}) · Δε                              (D_t, η = 0)

The two have opposite signs and nearly equal sizes — the changes cancel like destructive
interference (:func:`interference`, :func:`interference_coefficients`). Asyrp's answer is to edit
P_t only (eq. 4, :mod:`asyrp_lib.core.editing`). Here Δε is learned: one tensor of image shape shared by
all images and all steps t ≥ t_edit, optimised with the same loss on P_t as the global Δh and f_t
(:mod:`asyrp_lib.core.loss`), through the same reverse process (:mod:`asyrp_lib.core.process`).

=========================  ======================  ============================================
name here                  symbol                  where
=========================  ======================  ============================================
``x_T``                    x_T                     the inverted latent (DDIM, η = 0)
``delta_eps``              Δε                      the ε-shift (course notebook 04)
``delta_p``                sqrt(ᾱ_{t-1}) · ΔP_t     change of the P_t term (eq. 2)
``delta_d``                ΔD_t                    change of the D_t term (eq. 2)
=========================  ======================  ============================================
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Sequence

import torch
from torch.utils.checkpoint import checkpoint

from . import ddim
from .._utils import add_shift, check_int, check_number, grouped_options, progress_bar
from .editing import (EditOutput, Optimisation, as_model_input, edit_timesteps, make_clip_loss, optimise_edit,
                      prepare_edit, schedule_steps)
from .process import EpsShift, run_process

__all__ = [
    "XTOptimisation",
    "XTResult",
    "EpsShiftResult",
    "Interference",
    "sample_with_grad",
    "optimize_xT",
    "epsilon_shift_edit",
    "apply_delta_eps",
    "interference",
    "interference_coefficients",
]


# --------------------------------------------------------------------------------------------
# (a) optimising x_T through the sampler
# --------------------------------------------------------------------------------------------
@dataclass
class XTResult:
    """x_T optimised against the directional CLIP loss."""

    images: torch.Tensor  # S(x_T) for the optimised x_T (not clamped)
    x_T: torch.Tensor  # the optimised latents
    x_T_init: torch.Tensor  # the inversion it started from
    reconstruction: torch.Tensor  # S(x_T_init): what the sampler gives back without any edit
    timesteps: list[int]
    losses: list[float]  # mean total loss per iteration (before that iteration's update)
    clip_losses: list[float]  # mean directional loss (eq. 3) per iteration
    seconds: float  # wall time of the whole call


def _ddim_step_eps(unet, x: torch.Tensor, t: int, a_t: torch.Tensor, a_prev: torch.Tensor) -> torch.Tensor:
    return ddim.ddim_step(x, ddim.model_eps(unet, x, t), a_t, a_prev).x_prev


def sample_with_grad(unet, x_T: torch.Tensor, timesteps: Sequence[int], schedule: ddim.Schedule, *,
                     checkpointing: bool = True) -> torch.Tensor:
    """Deterministic DDIM sampling (η = 0) that keeps the graph, so gradients reach ``x_T``.

    With ``checkpointing`` each step is recomputed in the backward pass instead of stored
    (``torch.utils.checkpoint``): memory ≈ one step's activations plus the N×3×H×W step inputs.
    """
    ts = list(timesteps)
    x = x_T
    for t, t_prev in zip(ts, ddim.previous_timesteps(ts)):
        a_t, a_prev = schedule.alpha(t).to(x.device), schedule.alpha(t_prev).to(x.device)
        if checkpointing:
            x = checkpoint(_ddim_step_eps, unet, x, t, a_t, a_prev, use_reentrant=False)
        else:
            x = _ddim_step_eps(unet, x, t, a_t, a_prev)
    return x


@dataclass(frozen=True)
class XTOptimisation:
    """How :func:`optimize_xT` learns x_T: ``iters`` Adam steps of size ``lr`` on the loss weighted by ``lambda_l1``
    and ``lambda_lpips``; ``checkpointing``: recompute the sampler's activations in the backward pass (less
    memory); ``clip_loss``: a ready directional loss (default built from the prompts)."""

    iters: int = 20
    lr: float = 0.02
    lambda_l1: float = 0.0
    lambda_lpips: float = 0.0
    checkpointing: bool = True
    clip_loss: object = None


def optimize_xT(profile, x0: torch.Tensor, source: str, target: str, *, n_steps: int | None = None,
                optim: XTOptimisation | None = None, progress: bool = True, **keywords) -> XTResult:
    """Invert ``x0`` to x_T (η = 0), then optimise x_T with Adam so that the sampled image follows source → target.

    Loss per iteration: mean L_direction(S(x_T), x0) (eq. 3) + λ_L1 · mean|S(x_T) - x0| + λ_LPIPS · mean
    LPIPS(S(x_T), x0), with S the ``n_steps``-step DDIM sampler (default: the profile's steps; the same steps
    invert and sample).
    ``profile``: anything with ``unet``, ``schedule``, ``clip`` (and ``lpips`` when ``lambda_lpips`` > 0).
    ``optim``: an :class:`XTOptimisation`, whose fields may also be given by name (``iters=2, lr=0.02``).
    """
    optim = grouped_options("optimize_xT", keywords, {"optim": (XTOptimisation, optim)})["optim"]
    iters, lr, lambda_l1, lambda_lpips = optim.iters, optim.lr, optim.lambda_l1, optim.lambda_lpips
    checkpointing, clip_loss = optim.checkpointing, optim.clip_loss
    t0 = time.perf_counter()
    check_int(iters, "iters")
    check_number(lr, "lr", positive=True)
    check_number(lambda_l1, "lambda_l1")
    check_number(lambda_lpips, "lambda_lpips")
    x0 = as_model_input(profile, x0, "x0")
    loss_fn = make_clip_loss(profile, source, target, clip_loss)
    lpips = profile.lpips if lambda_lpips > 0 else None
    ts = schedule_steps(profile, n_steps)
    x_T_init = ddim.invert(profile.unet, x0, ts, profile.schedule, progress=progress,
                           refine=getattr(profile, "invert_refine", 0))
    with torch.no_grad():
        src_embeds = loss_fn.encoder.encode_image(x0)
    x_T = x_T_init.clone().requires_grad_(True)
    opt = torch.optim.Adam([x_T], lr=lr)
    losses, clip_losses = [], []
    reconstruction = None
    for _ in progress_bar(range(iters), enabled=progress, desc="optimising x_T"):
        out = sample_with_grad(profile.unet, x_T, ts, profile.schedule, checkpointing=checkpointing)
        if reconstruction is None:
            reconstruction = out.detach()
        l_clip = loss_fn(out, source_embeds=src_embeds).mean()
        loss = l_clip
        if lambda_l1 > 0:
            loss = loss + lambda_l1 * (out - x0).abs().mean()
        if lpips is not None:
            loss = loss + lambda_lpips * lpips(out, x0, check_range=False).mean()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the loss became {loss.item()}; lower lr (now {lr})")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        clip_losses.append(l_clip.item())
    with torch.no_grad():
        images = sample_with_grad(profile.unet, x_T.detach(), ts, profile.schedule, checkpointing=False)
    return XTResult(images=images, x_T=x_T.detach(), x_T_init=x_T_init, reconstruction=reconstruction,
                    timesteps=ts, losses=losses, clip_losses=clip_losses, seconds=time.perf_counter() - t0)


# --------------------------------------------------------------------------------------------
# (b) the ε-shift: Δε in both P_t and D_t
# --------------------------------------------------------------------------------------------
@dataclass
class EpsShiftResult:
    """A learned Δε (image shape, shared by all images and edit steps)."""

    delta_eps: torch.Tensor  # (3, H, W)
    images: torch.Tensor  # the training images edited with Δε in both P_t and D_t
    x_T: torch.Tensor  # their inversions
    timesteps: list[int]
    edit_timesteps: list[int]
    t_edit: int
    losses: list[float]  # mean total loss per epoch
    clip_losses: list[float]
    l1_losses: list[float]
    seconds: float
    optimise_seconds: float = 0.0


def epsilon_shift_edit(profile, x0: torch.Tensor, source: str, target: str, *, t_edit: int,
                       n_steps: int | None = None, optim: Optimisation | None = None, **keywords) -> EpsShiftResult:
    """Learn one Δε with the loss of every edit (:mod:`asyrp_lib.core.loss`: directional loss on P_t(ε + Δε) plus
    L1 to P_t^source), along the symmetric trajectory, and edit ``x0`` with it in both P_t and D_t for
    t ≥ t_edit. Arguments as :func:`asyrp_lib.core.editing.optimize_global_delta_h` (``optim`` and its fields by
    name; here lr defaults to 0.005 and the trajectory is always the symmetric one); also ``progress`` by name.
    """
    if "asymmetric" in keywords:
        raise TypeError("epsilon_shift_edit() got unexpected keyword argument asymmetric: the Δε edit is symmetric")
    g = grouped_options("epsilon_shift_edit", keywords, {"optim": (Optimisation, optim or Optimisation(lr=0.005))},
                        also=("progress",))
    optim, progress = replace(g["optim"], asymmetric=False), g.get("progress", True)
    t0 = time.perf_counter()
    pb = prepare_edit(profile, x0, source, target, t_edit=t_edit, n_steps=n_steps, optim=optim)
    x0, ts, ets = pb.x0, pb.timesteps, pb.edit_timesteps
    delta_eps = torch.zeros((1, *x0.shape[1:]), device=x0.device, dtype=x0.dtype, requires_grad=True)
    x_T = ddim.invert(profile.unet, x0, ts, profile.schedule, progress=progress,
                      refine=getattr(profile, "invert_refine", 0))
    t1 = time.perf_counter()
    hist = optimise_edit(profile, pb, x_T, EpsShift(delta_eps), [delta_eps], optim, progress=progress,
                         desc="optimising Δε")
    t2 = time.perf_counter()
    de = delta_eps.detach()
    images, _, _ = run_process(profile.hspace, x_T, ts, profile.schedule, edit=EpsShift(de), t_edit=t_edit,
                               asymmetric=False, progress=progress, desc="editing")
    return EpsShiftResult(delta_eps=de[0], images=images, x_T=x_T, timesteps=ts, edit_timesteps=ets,
                          t_edit=int(t_edit), seconds=time.perf_counter() - t0, optimise_seconds=t2 - t1, **hist)


def apply_delta_eps(profile, x_T: torch.Tensor, delta_eps: torch.Tensor, *, t_edit: int, n_steps: int | None = None,
                    symmetric: bool = True, strength: float = 1.0, progress: bool = True) -> EditOutput:
    """Run the reverse process from ``x_T`` with ε + strength·Δε for t ≥ t_edit: in both P_t and D_t
    (``symmetric``, the naive edit) or in P_t only; plain DDIM after."""
    t0 = time.perf_counter()
    x_T = as_model_input(profile, x_T, "x_T", value_range=None)
    if not isinstance(delta_eps, torch.Tensor) or tuple(delta_eps.shape[-3:]) != tuple(x_T.shape[1:]) \
            or delta_eps.dim() not in (3, 4) or (delta_eps.dim() == 4 and delta_eps.shape[0] != 1):
        shape = tuple(delta_eps.shape) if isinstance(delta_eps, torch.Tensor) else type(delta_eps).__name__
        raise ValueError(f"delta_eps: expected shape {tuple(x_T.shape[1:])} (one image), got {shape}")
    ts = schedule_steps(profile, n_steps)
    ets = edit_timesteps(ts, t_edit, profile.schedule.num_train_timesteps)
    de = delta_eps.reshape(1, *x_T.shape[1:]).to(device=x_T.device, dtype=x_T.dtype)
    images, _, _ = run_process(profile.hspace, x_T, ts, profile.schedule, edit=EpsShift(de, float(strength)),
                               t_edit=t_edit, asymmetric=not symmetric, progress=progress, desc="editing")
    return EditOutput(images=images, x_T=x_T, timesteps=ts, edit_timesteps=ets, t_edit=int(t_edit),
                      asymmetric=not symmetric, seconds=time.perf_counter() - t0)


# --------------------------------------------------------------------------------------------
# The interference of the two terms
# --------------------------------------------------------------------------------------------
@dataclass
class Interference:
    """What a Δε in both terms does to one DDIM step (η = 0): ``net = delta_p + delta_d``."""

    delta_p: torch.Tensor  # sqrt(ᾱ_{t-1}) · (P_t(ε + Δε) - P_t(ε)) = coef_p · Δε
    delta_d: torch.Tensor  # D_t(ε + Δε) - D_t(ε)                   = coef_d · Δε
    net: torch.Tensor  # the change of x_{t-1}
    coef_p: float  # -sqrt(ᾱ_{t-1}) · sqrt(1 - ᾱ_t) / sqrt(ᾱ_t)   (< 0)
    coef_d: float  # sqrt(1 - ᾱ_{t-1})                          (≥ 0)

    @property
    def cancellation(self) -> float:
        """1 - |net| / (|delta_p| + |delta_d|) (L2 norms): 1 when the two terms cancel completely, 0 when they add."""
        p, d = float(self.delta_p.norm()), float(self.delta_d.norm())
        return 1.0 - float(self.net.norm()) / max(p + d, 1e-30)


def interference(x_t: torch.Tensor, eps: torch.Tensor, delta_eps: torch.Tensor, alpha_t, alpha_prev) -> Interference:
    """Split the change ε → ε + Δε makes to one deterministic DDIM step into its P_t and D_t parts (eq. 2)."""
    if eps.shape != x_t.shape:
        raise ValueError(f"eps: expected the shape of x_t {tuple(x_t.shape)}, got {tuple(eps.shape)}")
    eps_shift = add_shift(eps, delta_eps, "delta_eps")
    a_t = torch.as_tensor(alpha_t, dtype=torch.float64)
    a_p = torch.as_tensor(alpha_prev, dtype=torch.float64)
    if a_t.numel() != 1 or a_p.numel() != 1:
        raise ValueError("alpha_t, alpha_prev: expected scalars (one step for the whole batch)")
    delta_p = float(a_p.sqrt()) * (ddim.predicted_x0(x_t, eps_shift, float(a_t)) - ddim.predicted_x0(x_t, eps, float(a_t)))
    delta_d = ddim.direction_to_xt(eps_shift, float(a_p)) - ddim.direction_to_xt(eps, float(a_p))
    coef_p = float(-(a_p.sqrt() * (1 - a_t).sqrt() / a_t.sqrt()))
    coef_d = float((1 - a_p).sqrt())
    return Interference(delta_p=delta_p, delta_d=delta_d, net=delta_p + delta_d, coef_p=coef_p, coef_d=coef_d)


def interference_coefficients(schedule: ddim.Schedule, timesteps: Sequence[int]) -> dict[str, list]:
    """Per step of a descending schedule: how much a unit Δε moves x_{t-1} through P_t (``coef_p`` < 0),
    through D_t (``coef_d`` > 0), and in total (``net`` = their sum, small: the two nearly cancel)."""
    ts = ddim.check_timesteps(timesteps, schedule)
    out = {"t": ts, "coef_p": [], "coef_d": [], "net": []}
    for t, t_prev in zip(ts, ddim.previous_timesteps(ts)):
        a_t, a_p = schedule.alpha(t).double(), schedule.alpha(t_prev).double()
        cp = float(-(a_p.sqrt() * (1 - a_t).sqrt() / a_t.sqrt()))
        cd = float((1 - a_p).sqrt())
        out["coef_p"].append(cp)
        out["coef_d"].append(cd)
        out["net"].append(cp + cd)
    return out
