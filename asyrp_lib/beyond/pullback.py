r"""The pullback basis (Park et al., "Understanding the latent space of diffusion models through the lens of
Riemannian geometry", NeurIPS 2023): the directions of x_t that move h_t most.

The encoder half maps x_t to h_t; its Jacobian J = ∂h_t/∂x_t pulls the Euclidean metric of h back to x_t, and the
right singular vectors v_i of J (J v_i = σ_i u_i) are the unit changes of x_t that change h_t most; the left ones
u_i are what they do in h. They are found by power (subspace) iteration on JᵀJ, with one forward-mode product
J v and one reverse-mode product Jᵀu per iteration and never the full Jacobian
(:func:`asyrp_lib.beyond.directions.top_singular_vectors`). Here J is summed over a few faces (JᵀJ = Σ_i J_iᵀJ_i), so the
basis moves all of them, and the edit is a step in x_t at one timestep t_p,

    x_{t_p} ← x_{t_p} + c · s · v,      s = std over faces of ⟨x_{t_p}, v⟩,

followed by plain DDIM (η = 0) to x_0. Which attribute each v moves is read by the oracle
(:mod:`asyrp_lib.beyond.methods`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .directions import forward_ad_context, top_singular_vectors
from ..core.process import reverse_process, run_process

__all__ = ["PullbackBasis", "pullback_directions", "pullback_basis", "latent_at", "edit_x_t"]


@dataclass
class PullbackBasis:
    """Directions of x_t (``v``, unit) and what they do in h (``u``, unit), by decreasing ``sigma``."""

    v: torch.Tensor  # (k, *x row shape)
    u: torch.Tensor  # (k, *output row shape)
    sigma: torch.Tensor  # (k,) ‖J v‖ (summed over the rows: sqrt of Σ_i ‖J_i v‖²)
    t: int | None = None


def pullback_directions(f: Callable, x: torch.Tensor, k: int = 3, *, iters: int = 6, oversample: int = 2,
                        seed: int = 0) -> PullbackBasis:
    """Top ``k`` right singular vectors v of J = ∂f/∂x at the rows of ``x`` (one v for all rows, JᵀJ summed over
    them) by power iteration, and u = J v / ‖J v‖ (row-stacked outputs, of one row's shape for one row)."""
    from torch.func import jvp

    V, S = top_singular_vectors(f, x, k, iters=iters, oversample=oversample, seed=seed)
    m = x.shape[0]
    with forward_ad_context():
        _, out = jvp(f, (x.detach().repeat(k, *[1] * (x.dim() - 1)),),
                     (V.to(x).repeat_interleave(m, 0),))
    Ju = out.reshape(k, m, *out.shape[1:])
    U = Ju.mean(1) if m > 1 else Ju[:, 0]  # the mean change of one row's output
    U = U / U.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (U.dim() - 1))
    return PullbackBasis(v=V, u=U.float(), sigma=S)


def pullback_basis(hspace, x_t: torch.Tensor, t: int, k: int = 3, **kw) -> PullbackBasis:
    """:func:`pullback_directions` of the encoder half x_t ↦ h_t (``hspace``: an HSpaceUNet) at timestep ``t``."""
    x_t = x_t.to(hspace.device, hspace.dtype)

    def h_of(x):
        return hspace.encode(x, t).h

    basis = pullback_directions(h_of, x_t, k, **kw)
    basis.t = int(t)
    return basis


@torch.no_grad()
def latent_at(hspace, x_T: torch.Tensor, timesteps: Sequence[int], schedule, t: int) -> tuple[torch.Tensor, int]:
    """(x_t, its index in ``timesteps``) by plain DDIM (η = 0) from x_T down to the first step ≤ ``t``."""
    index = next((i for i, s in enumerate(timesteps) if s <= t), None)
    if index is None:
        raise ValueError(f"t: no step of the schedule is at or below {t}")
    if index == 0:
        return x_T, 0
    for step in reverse_process(hspace, x_T, timesteps, schedule):
        if step.index == index:
            return step.x_t, index
    raise RuntimeError("unreachable")


@torch.no_grad()
def edit_x_t(hspace, x_t: torch.Tensor, index: int, timesteps: Sequence[int], schedule,
             deltas: Sequence[torch.Tensor]) -> torch.Tensor:
    """x_0 from x_t + Δx for each Δx of ``deltas`` (each one row's shape, or one per row), plain DDIM (η = 0)
    from the step at ``index``: (len(deltas), N, 3, S, S), not clamped. All copies run in one batch."""
    n = x_t.shape[0]
    xs = torch.cat([x_t + d.to(x_t) for d in deltas])
    x0, _, _ = run_process(hspace, xs, timesteps, schedule, start=int(index))
    return x0.view(len(deltas), n, *x_t.shape[1:])
