r"""DDIM built from its equations: P_t, D_t, σ_t, sampling and deterministic inversion.

The DDIM update (eq. 1 of the course, eq. 12 of Song et al., "Denoising Diffusion Implicit Models")
splits into a *predicted x0* term and a *direction to x_t* term (eq. 2):

    x_{t-1} = sqrt(ᾱ_{t-1}) · P_t(ε) + D_t(ε) + σ_t z,

    P_t(ε) = (x_t - sqrt(1 - ᾱ_t) ε) / sqrt(ᾱ_t)
    D_t(ε) = sqrt(1 - ᾱ_{t-1} - σ_t²) · ε
    σ_t    = η · sqrt((1 - ᾱ_{t-1}) / (1 - ᾱ_t)) · sqrt(1 - ᾱ_t / ᾱ_{t-1})

Asyrp (Kwon, Jeong & Uh, ICLR 2023) edits only the P_t term (eq. 4/5 of the course):
``ddim_step(x_t, eps_edited, a_t, a_prev, eps_direction=eps)``.

Notation — **``alpha`` always means ᾱ, the cumulative product** ∏(1 - β_s), as in the DDIM and Asyrp
papers (not the per-step α_t of the DDPM paper). ᾱ at t = -1 is 1 (the clean image).

=========================  ===========  ================================
name here                  symbol       where
=========================  ===========  ================================
``alpha_t``                ᾱ_t          DDIM §4.1, Asyrp eq. 1
``alpha_prev``             ᾱ_{t-1}      (the next, smaller timestep)
``eps``                    ε^θ_t(x_t)   DDIM eq. 12, Asyrp eq. 1
``predicted_x0``           P_t          course eq. 2, Asyrp eq. 2
``direction_to_xt``        D_t          course eq. 2, Asyrp eq. 2
``ddim_sigma``             σ_t          DDIM eq. 16
``eta``                    η            DDIM eq. 16 (0: deterministic)
``eps_direction``          ε in D_t     Asyrp eq. 4 (the asymmetric step)
=========================  ===========  ================================

Timesteps are integers in [0, T-1] (T = ``num_train_timesteps``); a sampling schedule is a descending
list ending at 0, whose last step goes to t = -1. Functions take the schedule and the timesteps as
arguments: there is no hidden state to set first.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence, Union

import torch

from .._utils import check_images, progress_bar

Tensorish = Union[float, torch.Tensor]

__all__ = [
    "Schedule",
    "DDIMStepOutput",
    "predicted_x0",
    "direction_to_xt",
    "ddim_sigma",
    "ddim_step",
    "timesteps",
    "previous_timesteps",
    "check_timesteps",
    "model_eps",
    "gaussian_eps",
    "sample_steps",
    "sample",
    "invert",
]


# --------------------------------------------------------------------------------------------
# The noise schedule
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Schedule:
    """The cumulative noise schedule ᾱ_t over the training timesteps t = 0 … T-1."""

    alphas_cumprod: torch.Tensor  # (T,) float32, ᾱ_t, decreasing from ≈1 towards 0
    clip_sample: bool = False  # sampling clamps P_t to [-1, 1] (the scheduler config's ``clip_sample``)

    def __post_init__(self):
        a = torch.as_tensor(self.alphas_cumprod, dtype=torch.float32).detach().cpu().flatten()
        if a.numel() < 2 or not torch.all((a > 0) & (a <= 1)):
            raise ValueError("alphas_cumprod: expected a 1-D sequence of values in (0, 1], at least 2 long")
        object.__setattr__(self, "alphas_cumprod", a)
        object.__setattr__(self, "clip_sample", bool(self.clip_sample))

    @classmethod
    def linear(cls, num_train_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02, *,
               clip_sample: bool = False) -> "Schedule":
        """The DDPM linear β schedule (Ho et al. 2020), computed as diffusers does (float32)."""
        if num_train_timesteps < 2:
            raise ValueError(f"num_train_timesteps: expected an integer ≥ 2, got {num_train_timesteps}")
        if not 0 < beta_start <= beta_end < 1:
            raise ValueError(f"beta_start, beta_end: expected 0 < beta_start ≤ beta_end < 1, got {beta_start}, {beta_end}")
        betas = torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float32)
        return cls(torch.cumprod(1.0 - betas, dim=0), clip_sample=clip_sample)

    @classmethod
    def from_scheduler(cls, scheduler, *, clip_sample: bool | None = None) -> "Schedule":
        """Take ᾱ from any diffusers scheduler that has ``alphas_cumprod`` (DDPM, DDIM, …), and ``clip_sample``
        from its config unless given."""
        a = getattr(scheduler, "alphas_cumprod", None)
        if a is None:
            raise ValueError(f"scheduler: {type(scheduler).__name__} has no alphas_cumprod; pass a DDPM/DDIM scheduler")
        if clip_sample is None:
            clip_sample = bool(getattr(getattr(scheduler, "config", None), "clip_sample", False))
        return cls(torch.as_tensor(a), clip_sample=clip_sample)

    @property
    def num_train_timesteps(self) -> int:
        return int(self.alphas_cumprod.numel())

    def alpha(self, t) -> torch.Tensor:
        """ᾱ_t for an int or an integer tensor of timesteps; t = -1 gives 1.0. Returns a float32 tensor."""
        tt = torch.as_tensor(t)
        if tt.is_floating_point() and not torch.all(tt == tt.round()):
            raise ValueError(f"t: expected integer timesteps, got {t}")
        tt = tt.long()
        T = self.num_train_timesteps
        if torch.any(tt < -1) or torch.any(tt >= T):
            raise ValueError(f"t: expected timesteps in [-1, {T - 1}], got {t}")
        table = torch.cat([self.alphas_cumprod, torch.ones(1)])  # index -1 → the appended 1.0
        return table[tt.cpu()]


# --------------------------------------------------------------------------------------------
# The terms of eq. (2)
# --------------------------------------------------------------------------------------------
def _as_factor(a: Tensorish, like: torch.Tensor) -> torch.Tensor:
    """A scalar or per-sample (N,) value shaped to broadcast over (N, C, H, W)."""
    a = torch.as_tensor(a, dtype=like.dtype, device=like.device)
    if a.dim() == 1:
        a = a.view(-1, *([1] * (like.dim() - 1)))
    return a


def predicted_x0(x_t: torch.Tensor, eps: torch.Tensor, alpha_t: Tensorish) -> torch.Tensor:
    """P_t(ε) = (x_t - sqrt(1 - ᾱ_t) ε) / sqrt(ᾱ_t): the model's current guess of the clean image."""
    a = _as_factor(alpha_t, x_t)
    return (x_t - (1 - a).sqrt() * eps) / a.sqrt()


def direction_to_xt(eps: torch.Tensor, alpha_prev: Tensorish, sigma: Tensorish = 0.0) -> torch.Tensor:
    """D_t(ε) = sqrt(1 - ᾱ_{t-1} - σ_t²) · ε: the part of x_{t-1} that points back towards the noise."""
    a = _as_factor(alpha_prev, eps)
    s = _as_factor(sigma, eps)
    return (1 - a - s**2).clamp_min(0).sqrt() * eps


def ddim_sigma(alpha_t: Tensorish, alpha_prev: Tensorish, eta: float) -> torch.Tensor:
    """σ_t = η · sqrt((1 - ᾱ_{t-1}) / (1 - ᾱ_t)) · sqrt(1 - ᾱ_t / ᾱ_{t-1}); η = 1 is DDPM, η = 0 is DDIM."""
    if not 0.0 <= float(eta) <= 1.0:
        raise ValueError(f"eta: expected a value in [0, 1], got {eta}")
    a_t = torch.as_tensor(alpha_t, dtype=torch.float32)
    a_p = torch.as_tensor(alpha_prev, dtype=torch.float32)
    return eta * ((1 - a_p) / (1 - a_t)).sqrt() * (1 - a_t / a_p).sqrt()


@dataclass
class DDIMStepOutput:
    """One reverse step: the next latent and the P_t preview it was built from."""

    x_prev: torch.Tensor  # x_{t-1}
    pred_x0: torch.Tensor  # P_t(ε), the predicted clean image
    t: int | None = None  # the timestep this step started from (set by the samplers)


def ddim_step(
    x_t: torch.Tensor,
    eps: torch.Tensor,
    alpha_t: Tensorish,
    alpha_prev: Tensorish,
    *,
    eta: float = 0.0,
    noise: torch.Tensor | torch.Generator | None = None,
    eps_direction: torch.Tensor | None = None,
    clip_sample: bool = False,
) -> DDIMStepOutput:
    """x_{t-1} = sqrt(ᾱ_{t-1}) · P_t(eps) + D_t(eps_direction) + σ_t · noise   (eq. 2, eq. 4).

    ``eps`` feeds P_t; ``eps_direction`` (default ``eps``) feeds D_t. Passing an edited ε as ``eps``
    and the original as ``eps_direction`` is Asyrp's asymmetric step. With η > 0 the noise z is ``noise`` when
    it is a tensor, else drawn from it when it is a ``torch.Generator`` (``None``: the global one). ``clip_sample``: clamp P_t to [-1, 1] before
    x_{t-1} is formed (D_t keeps the model's ε, as ``diffusers.DDIMScheduler`` does by default).
    """
    if x_t.shape != eps.shape:
        raise ValueError(f"eps: expected the shape of x_t {tuple(x_t.shape)}, got {tuple(eps.shape)}")
    if eps_direction is None:
        eps_direction = eps
    elif eps_direction.shape != eps.shape:
        raise ValueError(f"eps_direction: expected shape {tuple(eps.shape)}, got {tuple(eps_direction.shape)}")
    sigma = ddim_sigma(alpha_t, alpha_prev, eta)
    p_t = predicted_x0(x_t, eps, alpha_t)
    if clip_sample:
        p_t = p_t.clamp(-1.0, 1.0)
    x_prev = _as_factor(alpha_prev, x_t).sqrt() * p_t + direction_to_xt(eps_direction, alpha_prev, sigma)
    if eta > 0:
        if noise is None or isinstance(noise, torch.Generator):
            noise = torch.randn(x_t.shape, generator=noise, device="cpu" if noise is None else noise.device,
                                dtype=x_t.dtype).to(x_t.device)
        elif noise.shape != x_t.shape:
            raise ValueError(f"noise: expected shape {tuple(x_t.shape)}, got {tuple(noise.shape)}")
        x_prev = x_prev + _as_factor(sigma, x_t) * noise
    return DDIMStepOutput(x_prev=x_prev, pred_x0=p_t)


# --------------------------------------------------------------------------------------------
# Timestep sequences
# --------------------------------------------------------------------------------------------
def timesteps(num_steps: int, num_train_timesteps: int = 1000) -> list[int]:
    """Evenly spaced descending timesteps ending at 0 (diffusers' "leading" spacing, offset 0).

    ``timesteps(5)`` → ``[800, 600, 400, 200, 0]``. Each step goes to the next entry; the last one to -1.
    """
    if not isinstance(num_steps, int) or isinstance(num_steps, bool) or not 1 <= num_steps <= num_train_timesteps:
        raise ValueError(f"num_steps: expected an integer in [1, {num_train_timesteps}], got {num_steps!r}")
    ratio = num_train_timesteps // num_steps
    return [i * ratio for i in range(num_steps - 1, -1, -1)]


def previous_timesteps(ts: Sequence[int]) -> list[int]:
    """The timestep each step of a descending sequence goes to: ``[800, 600, …, 0]`` → ``[600, …, 0, -1]``."""
    ts = list(ts)
    return ts[1:] + [-1]


def check_timesteps(ts: Sequence[int], schedule: Schedule) -> list[int]:
    """A strictly descending sequence of integer timesteps in [0, T-1] (T: the schedule's), as a list."""
    try:
        ts = [int(t) for t in ts]
    except (TypeError, ValueError):
        raise ValueError("timesteps: expected a sequence of integers (e.g. ddim.timesteps(50))") from None
    if not ts:
        raise ValueError("timesteps: expected at least one timestep")
    T = schedule.num_train_timesteps
    if any(t < 0 or t >= T for t in ts):
        raise ValueError(f"timesteps: expected integers in [0, {T - 1}], got min {min(ts)}, max {max(ts)}")
    if any(a <= b for a, b in zip(ts, ts[1:])):
        raise ValueError("timesteps: expected a strictly descending sequence (e.g. ddim.timesteps(50))")
    return ts


# --------------------------------------------------------------------------------------------
# The model's ε
# --------------------------------------------------------------------------------------------
def _model_device_dtype(model) -> tuple[torch.device, torch.dtype]:
    inner = getattr(model, "unet", model)
    if isinstance(inner, torch.nn.Module):
        p = next(inner.parameters(), None)
        if p is not None:
            return p.device, p.dtype
    return torch.device("cpu"), torch.float32


def model_eps(model, x_t: torch.Tensor, t: int) -> torch.Tensor:
    """ε^θ(x_t, t) from a ``UNet2DModel``, an ``HSpaceUNet`` or any callable ``(x_t, t) -> ε``."""
    tt = torch.full((x_t.shape[0],), int(t), device=x_t.device, dtype=torch.long)
    if hasattr(model, "eps") and callable(model.eps):
        return model.eps(x_t, tt)
    out = model(x_t, tt)
    return out.sample if hasattr(out, "sample") else out


def gaussian_eps(schedule: Schedule, variance: float = 0.25):
    """The exact ε-predictor for data distributed as N(0, variance·I): a perfect "model" to study DDIM.

    For x_t = sqrt(ᾱ_t) x_0 + sqrt(1 - ᾱ_t) ε with x_0 ~ N(0, v I), E[ε | x_t] = sqrt(1 - ᾱ_t) x_t / (ᾱ_t v + 1 - ᾱ_t).
    Any error of ``invert`` followed by ``sample`` with it is the discretisation error of DDIM alone.
    """
    def eps(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = _as_factor(schedule.alpha(t).to(x_t.device), x_t)
        return (1 - a).sqrt() * x_t / (a * variance + 1 - a)

    return eps


# --------------------------------------------------------------------------------------------
# Sampling and inversion
# --------------------------------------------------------------------------------------------
def sample_steps(
    unet,
    x_T: torch.Tensor,
    timesteps: Sequence[int],
    schedule: Schedule,
    *,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    progress: bool = True,
    clip_sample: bool | None = None,
) -> Iterator[DDIMStepOutput]:
    """Run the reverse process from ``x_T`` and yield every step (with its P_t preview).

    ``sample`` returns only the last ``x_prev``; iterate this to look at the trajectory. ``clip_sample``
    (default: the schedule's, i.e. the scheduler config's) clamps P_t to [-1, 1] at every step.
    """
    clip = schedule.clip_sample if clip_sample is None else bool(clip_sample)
    check_images(x_T, "x_T", value_range=None)
    ts = check_timesteps(timesteps, schedule)
    device, dtype = _model_device_dtype(unet)
    x = x_T.to(device=device, dtype=dtype)
    with torch.no_grad():
        for t, t_prev in progress_bar(list(zip(ts, previous_timesteps(ts))), enabled=progress, desc="DDIM sampling"):
            eps = model_eps(unet, x, t)
            out = ddim_step(x, eps, schedule.alpha(t), schedule.alpha(t_prev), eta=eta, noise=generator,
                            clip_sample=clip)
            out.t = t
            x = out.x_prev
            yield out


def sample(
    unet,
    x_T: torch.Tensor,
    timesteps: Sequence[int],
    schedule: Schedule,
    *,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    progress: bool = True,
    clip_sample: bool | None = None,
) -> torch.Tensor:
    """DDIM sampling x_T → x_0 over a descending ``timesteps`` sequence (batched, on the model's device).

    ``clip_sample`` (default: the schedule's) clamps P_t to [-1, 1] at every step; inversion never clips.
    """
    x = x_T
    for out in sample_steps(unet, x_T, timesteps, schedule, eta=eta, generator=generator, progress=progress,
                            clip_sample=clip_sample):
        x = out.x_prev
    return x


def invert(
    unet,
    x_0: torch.Tensor,
    timesteps: Sequence[int],
    schedule: Schedule,
    *,
    progress: bool = True,
    refine: int = 0,
) -> torch.Tensor:
    """Deterministic DDIM inversion x_0 → x_T (η = 0), the mirror image of ``sample``.

    Each sampling step t → t_prev is undone by the step t_prev → t

        x_t = sqrt(ᾱ_t) · P_{t_prev}(ε) + sqrt(1 - ᾱ_t) · ε.

    Plain inversion (``refine=0``) uses ε = ε^θ(x_{t_prev}, t_prev), computed at the lower level (at
    t_prev = -1 the model is asked at t = 0): ``sample(invert(x_0))`` ≈ x_0 when steps are small. The
    sampling step itself uses ε^θ(x_t, t), at the level it starts from, so inverting it exactly means
    solving x_t = f(x_t) with ε = ε^θ(x_t, t). ``refine=k`` does k fixed-point iterations of that
    equation per step (k more U-Net calls each), starting from the plain estimate; the regeneration
    error then shrinks with every iteration (measured in the model card).
    """
    check_images(x_0, "x_0")
    if isinstance(refine, bool) or not isinstance(refine, int) or refine < 0:
        raise ValueError(f"refine: expected a number of fixed-point iterations ≥ 0, got {refine!r}")
    ts = check_timesteps(timesteps, schedule)
    device, dtype = _model_device_dtype(unet)
    x = x_0.to(device=device, dtype=dtype)
    pairs = list(zip(reversed(previous_timesteps(ts)), reversed(ts)))  # (-1 → 0), (0 → r), …
    with torch.no_grad():
        for t_low, t_high in progress_bar(pairs, enabled=progress, desc="DDIM inversion"):
            a_low, a_high = schedule.alpha(t_low), schedule.alpha(t_high)
            root_a, root_b = _as_factor(a_high, x).sqrt(), (1 - _as_factor(a_high, x)).sqrt()

            def up(eps, x=x, a_low=a_low, root_a=root_a, root_b=root_b):
                return root_a * predicted_x0(x, eps, a_low) + root_b * eps

            x_high = up(model_eps(unet, x, max(t_low, 0)))
            for _ in range(refine):  # fixed point of x_t = up(ε^θ(x_t, t))
                x_high = up(model_eps(unet, x_high, t_high))
            x = x_high
    return x
