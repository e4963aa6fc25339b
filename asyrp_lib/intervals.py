r"""The editing interval and the quality-boosting interval (Asyrp §3.3–3.4; the schedule of eq. 6).

Two LPIPS curves over the timesteps t, averaged over a set of images x_0:

    ξ_t = LPIPS(x_0, P_t)   editing strength: how much of the image is still undecided at t
    λ_t = LPIPS(x_0, x_t)   quality deficiency: how much noise x_t still carries

with x_t drawn from the forward process q(x_t | x_0),  x_t = sqrt(ᾱ_t) x_0 + sqrt(1 - ᾱ_t) ε,  ε ~ N(0, I)
(one ε per image, shared by all t, so the curves are smooth in t), and P_t = (x_t - sqrt(1 - ᾱ_t) ε_θ(x_t, t)) / sqrt(ᾱ_t)
the model's predicted x_0 (:func:`asyrp_lib.ddim.predicted_x0`). As in the reference implementation the images
go to LPIPS unclamped.

The editing interval is [t_edit, T], where ξ_{t_edit} = 0.33 (:func:`select_t_edit`); the quality boosting
(stochastic, η = 1) interval is [0, t_boost], where λ_{t_boost} = 1.2 (:func:`select_t_boost`). Both select the
first timestep, counting up from t = 0, at which the mean curve reaches the threshold.
:func:`edit_threshold` is the reference implementation's prompt-dependent threshold 0.33 · cos(E_T(source), E_T(target)).

(The reference implementation measures the same curves along a deterministic DDIM inversion trajectory instead of
the forward process; for a well-trained model the two agree closely, and the forward process needs no inversion.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from . import ddim
from ._utils import check_images, progress_bar

__all__ = ["IntervalCurve", "lpips_x_pt", "lpips_x_xt", "select_t_edit", "select_t_boost", "edit_threshold",
           "forward_diffuse"]


@dataclass
class IntervalCurve:
    """An LPIPS curve over timesteps for a set of images."""

    timesteps: list[int]  # ascending
    values: torch.Tensor  # (T, N): the distance for each timestep and image (float32, CPU)
    mean: torch.Tensor  # (T,): the mean over images
    label: str  # "LPIPS(x, P_t)" or "LPIPS(x, x_t)"

    def first_reaching(self, threshold: float) -> int:
        """The first timestep (from t = 0 up) where the mean curve reaches ``threshold``."""
        return _first_reaching(self.timesteps, self.mean, threshold, self.label)


def forward_diffuse(x0: torch.Tensor, noise: torch.Tensor, alpha_t) -> torch.Tensor:
    """q(x_t | x_0): x_t = sqrt(ᾱ_t) x_0 + sqrt(1 - ᾱ_t) ε."""
    a = torch.as_tensor(alpha_t, dtype=x0.dtype, device=x0.device)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


# ----------------------------------------------------------------------------------------------
# The curves
# ----------------------------------------------------------------------------------------------

def _timesteps(timesteps, schedule: ddim.Schedule) -> list[int]:
    T = schedule.num_train_timesteps
    if timesteps is None:
        timesteps = 50
    if isinstance(timesteps, int) and not isinstance(timesteps, bool):
        return sorted(ddim.timesteps(timesteps, T))
    try:
        ts = sorted({int(t) for t in timesteps})
    except (TypeError, ValueError):
        raise ValueError("timesteps must be None, a number of points, or a sequence of integers") from None
    if not ts or ts[0] < 0 or ts[-1] >= T:
        raise ValueError(f"timesteps must be integers in [0, {T - 1}], got {list(timesteps)[:5]}…")
    return ts


def _module_device(module, default) -> torch.device:
    inner = getattr(module, "unet", module)
    if isinstance(inner, torch.nn.Module):
        p = next(inner.parameters(), None)
        if p is not None:
            return p.device
    return torch.device(default)


def _curve(x0, schedule, lpips, timesteps, seed, progress, label, unet=None) -> IntervalCurve:
    check_images(x0, "x0", channels=3)
    if not isinstance(schedule, ddim.Schedule):
        raise ValueError(f"schedule must be an asyrp_lib.ddim.Schedule, got {type(schedule).__name__}")
    ts = _timesteps(timesteps, schedule)
    lpips_device = _module_device(lpips, "cpu")
    device = _module_device(unet, lpips_device) if unet is not None else lpips_device
    dtype = next(unet.parameters()).dtype if isinstance(unet, torch.nn.Module) else torch.float32
    gen = torch.Generator().manual_seed(int(seed))
    noise = torch.randn(x0.shape, generator=gen, dtype=torch.float32).to(device)  # device-independent draw
    x0_dev = x0.to(device=device, dtype=torch.float32)
    x0_lp = x0.to(device=lpips_device, dtype=torch.float32)
    rows = []
    with torch.no_grad():
        for t in progress_bar(ts, enabled=progress, desc=label):
            a = schedule.alpha(t).to(device)
            x_t = forward_diffuse(x0_dev, noise, a)
            if unet is None:
                y = x_t
            else:
                eps = ddim.model_eps(unet, x_t.to(dtype), t).float()
                y = ddim.predicted_x0(x_t, eps, a)
            rows.append(lpips(x0_lp, y.to(lpips_device), check_range=False).float().cpu())
    values = torch.stack(rows)
    return IntervalCurve(timesteps=ts, values=values, mean=values.mean(dim=1), label=label)


def lpips_x_pt(unet, x0: torch.Tensor, schedule: ddim.Schedule, lpips, timesteps=None, *, seed: int = 0,
               progress: bool = True) -> IntervalCurve:
    """ξ_t = LPIPS(x_0, P_t) for each timestep and image.

    ``unet``: a ``diffusers.UNet2DModel`` (or anything :func:`asyrp_lib.ddim.model_eps` accepts);
    ``x0``: images ``(N, 3, H, W)`` in [-1, 1]; ``lpips``: from :func:`asyrp_lib.perceptual.load_lpips`;
    ``timesteps``: a sequence of ints, or a number of evenly spaced points (default 50: 0, 20, …, 980);
    ``seed``: for the forward-process noise ε. One U-Net call per timestep, batched over the images.
    """
    return _curve(x0, schedule, lpips, timesteps, seed, progress, "LPIPS(x, P_t)", unet=unet)


def lpips_x_xt(x0: torch.Tensor, schedule: ddim.Schedule, lpips, timesteps=None, *, seed: int = 0,
               progress: bool = True) -> IntervalCurve:
    """λ_t = LPIPS(x_0, x_t) for each timestep and image (no model needed). Arguments as :func:`lpips_x_pt`;
    the same ``seed`` draws the same ε, so the two curves see the same x_t."""
    return _curve(x0, schedule, lpips, timesteps, seed, progress, "LPIPS(x, x_t)")


# ----------------------------------------------------------------------------------------------
# Choosing t_edit and t_boost
# ----------------------------------------------------------------------------------------------

def _first_reaching(timesteps, values, threshold: float, name: str) -> int:
    ts = np.asarray([int(t) for t in timesteps])
    v = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values, dtype=np.float64)
    if v.ndim == 2:
        v = v.mean(axis=1)  # (T, N) → mean over images
    if v.ndim != 1 or v.shape[0] != ts.shape[0] or ts.size == 0:
        raise ValueError(f"{name}: expected values of shape (T,) or (T, N) with T = len(timesteps) = {ts.size}, "
                         f"got {v.shape}")
    if len(set(ts.tolist())) != ts.size:
        raise ValueError("timesteps must not repeat")
    if not np.isfinite(v).all():
        raise ValueError(f"{name} contains NaN or inf values")
    threshold = float(threshold)
    if not threshold > 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    order = np.argsort(ts)
    ts, v = ts[order], v[order]
    reached = np.nonzero(v >= threshold)[0]
    if reached.size == 0:
        raise ValueError(f"{name} never reaches {threshold:g}: its maximum is {v.max():.4g} at t = {ts[v.argmax()]}. "
                         "Use a lower threshold or include larger timesteps.")
    return int(ts[reached[0]])


def select_t_edit(timesteps: Sequence[int], lpips_x_pt, threshold: float = 0.33) -> int:
    """t_edit: the first timestep (counting up from 0) where the mean ξ_t = LPIPS(x, P_t) reaches ``threshold``.

    ``lpips_x_pt``: values ``(T,)`` or ``(T, N)`` (averaged over the N images) for ``timesteps`` in any order.
    Editing happens on [t_edit, T]. Raises ``ValueError`` (stating the maximum reached) if the curve never gets there.
    """
    return _first_reaching(timesteps, lpips_x_pt, threshold, "lpips_x_pt")


def select_t_boost(timesteps: Sequence[int], lpips_x_xt, threshold: float = 1.2) -> int:
    """t_boost: the first timestep (counting up from 0) where the mean λ_t = LPIPS(x, x_t) reaches ``threshold``.

    Quality boosting (stochastic steps, η = 1) runs on [0, t_boost]. Same conventions as :func:`select_t_edit`.
    """
    return _first_reaching(timesteps, lpips_x_xt, threshold, "lpips_x_xt")


def edit_threshold(text_cosine: float, base: float = 0.33) -> float:
    """The reference implementation's prompt-dependent ξ threshold: ``base · cos(E_T(source), E_T(target))``.

    ``text_cosine`` is the cosine similarity of the source and target text embeddings
    (e.g. ``DirectionalCLIPLoss.text_cosine``), in (0, 1]. Since ξ_t grows with t, a more different target
    text (smaller cosine) gives a lower threshold, hence a smaller t_edit and a longer editing interval
    [t_edit, T]; two nearly identical prompts keep the full ``base``.
    """
    c = float(text_cosine)
    if not 0 < c <= 1 + 1e-6:
        raise ValueError(f"text_cosine must be in (0, 1] (the cosine of two CLIP text embeddings), got {c}")
    if not base > 0:
        raise ValueError(f"base must be positive, got {base}")
    return float(base) * min(c, 1.0)
