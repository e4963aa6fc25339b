r"""Content injection in h (Jeong et al., "Training-free content injection using h-space features of diffusion
models", WACV 2024).

Two images run their reverse processes side by side from their inversions. At each step of the editing interval
[T, t_edit] the *original* image's bottleneck is blended with the *content* image's by spherical interpolation,

    h_t' = slerp(h_t^orig, h_t^content; γ) = sin((1−γ)θ)/sin θ · h_t^orig + sin(γθ)/sin θ · h_t^content,

θ the angle between the two (flattened; for h of different norms, :func:`slerp` turns the unit vectors so and
moves the norm linearly from one to the other), while the skip connections stay the original's: the layout and the
parts that h carries come from the content image, the rest (colours, textures the skips carry) from the original.
ε from h_t' feeds P_t (the asymmetric step, eq. 4/5), so this is a Δh edit with Δh_t = h_t' − h_t^orig.
:func:`attribute_sources` reads which attributes the result takes from which image.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from ..toy.evaluate import label_of
from ..core.process import run_process
from ..toy.toyattributes import ATTRIBUTES

__all__ = ["slerp", "InjectH", "inject", "attribute_sources"]


def slerp(a: torch.Tensor, b: torch.Tensor, gamma: float, eps: float = 1e-7) -> torch.Tensor:
    """Spherical interpolation from ``a`` (γ = 0) to ``b`` (γ = 1), row by row over the flattened trailing
    dimensions (the norm is interpolated linearly, so vectors of equal norm keep it). Nearly parallel rows fall
    back to linear interpolation."""
    if a.shape != b.shape:
        raise ValueError(f"a, b: expected the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    fa, fb = a.flatten(1).double(), b.flatten(1).double()
    na, nb = fa.norm(dim=1, keepdim=True), fb.norm(dim=1, keepdim=True)
    ua, ub = fa / na.clamp_min(eps), fb / nb.clamp_min(eps)
    cos = (ua * ub).sum(1, keepdim=True).clamp(-1.0, 1.0)
    theta = torch.arccos(cos)
    g = float(gamma)
    sin = torch.sin(theta)
    near = sin.abs() < 1e-4
    wa = torch.where(near, torch.full_like(sin, 1 - g), torch.sin((1 - g) * theta) / sin.clamp_min(1e-12))
    wb = torch.where(near, torch.full_like(sin, g), torch.sin(g * theta) / sin.clamp_min(1e-12))
    direction = wa * ua + wb * ub
    direction = direction / direction.norm(dim=1, keepdim=True).clamp_min(eps)
    out = direction * ((1 - g) * na + g * nb)
    return out.to(a.dtype).view(a.shape)


class InjectH:
    """An edit of :mod:`asyrp_lib.core.process` for rows [originals (n); contents (n)]: the originals' h is slerped
    towards their content's h with ratio ``gamma``; the content rows run unedited (the reconstruction rows).
    ``blend``: the interpolation ``blend(h, h_content, gamma)`` (default :func:`slerp`; a notebook passes its own)."""

    def __init__(self, gamma: float, blend: Callable | None = None):
        if not 0.0 <= float(gamma) <= 1.0:
            raise ValueError(f"gamma: expected a ratio in [0, 1], got {gamma}")
        self.gamma = float(gamma)
        self.blend = slerp if blend is None else blend

    def __call__(self, hs, x, t, i, n):
        enc = hs.encode(x, t)
        h = enc.h
        if h.shape[0] != 2 * n:
            raise ValueError("InjectH: expected the content rows after the originals (run with reconstruct=True)")
        mixed = self.blend(h[:n], h[n:], self.gamma).to(h)
        rows = torch.cat([torch.arange(n), torch.arange(2 * n)]).to(h.device)
        out = hs.decode(enc, torch.cat([mixed, h]), rows=rows)
        return out[:n], out[n:]


@torch.no_grad()
def inject(hspace, x_T: torch.Tensor, x_T_content: torch.Tensor, timesteps: Sequence[int], schedule, *,
           gamma: float = 0.5, t_edit: int, asymmetric: bool = True, blend: Callable | None = None) -> torch.Tensor:
    """x_0 of each original (inversion ``x_T``) with the h of the content image of the same row (``x_T_content``)
    injected for t ≥ t_edit (blended by ``blend``, default :func:`slerp`); plain DDIM (η = 0) below. Returns
    (N, 3, S, S), not clamped."""
    if x_T.shape != x_T_content.shape:
        raise ValueError(f"x_T_content: expected the shape of x_T {tuple(x_T.shape)}, got {tuple(x_T_content.shape)}")
    x0, _, _ = run_process(hspace, x_T, timesteps, schedule, edit=InjectH(gamma, blend), t_edit=t_edit, t_boost=None,
                           asymmetric=asymmetric, reconstruct=True, x_unedited=x_T_content)
    return x0


def attribute_sources(oracle, original: torch.Tensor, content: torch.Tensor, result: torch.Tensor,
                      attributes: Sequence[str] | None = None) -> dict[str, dict]:
    """For each attribute, over the pairs whose original and content read differently: the share of results that
    read the content's value (``from_content``), the original's (``from_original``), and how many pairs (``n``).
    Hair colour only where all three have hair."""
    attributes = list(attributes or ATTRIBUTES)
    po, pc, pr = (oracle.predict(x.float().clamp(-1, 1)) for x in (original, content, result))
    out = {}
    for a in attributes:
        fc = fo = n = 0
        for o, c, r in zip(po, pc, pr):
            if a == "hair_color" and "none" in (o["hair"], c["hair"], r["hair"]):
                continue
            lo, lc, lr = label_of(o, a), label_of(c, a), label_of(r, a)
            if lo == lc:
                continue
            n += 1
            fc += lr == lc
            fo += lr == lo
        out[a] = {"n": n, "from_content": fc / n if n else None, "from_original": fo / n if n else None}
    return out
