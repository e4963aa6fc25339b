r"""Checks of notebook 10 (h-space methods side by side): content injection's slerp and the boundary's edit.

=======  ==========================================================================  ====================================
exercise  the student writes                                                          the library's version
=======  ==========================================================================  ====================================
10.1      ``slerp(a, b, gamma)``: row by row, the unit vectors turned by γ of the        :func:`asyrp_lib.beyond.injection.slerp`
          angle θ between them, the norm moved linearly from ‖a‖ to ‖b‖
10.2      ``boundary_delta(h, labels, normal, c)`` → Δh = c · d · n, n the unit normal,  :func:`asyrp_lib.beyond.boundary.boundary_delta`
          d = mean_{y=1} n·h − mean_{y=0} n·h
=======  ==========================================================================  ====================================

The inputs are small random tensors (rows of h's shape (C, H, W)) in double precision, a fresh draw each time;
nothing needs a model.
"""
from __future__ import annotations

import torch

from ..beyond.boundary import boundary_delta
from ..beyond.injection import slerp
from .checks import Part, Wrong, as_tensor, call, diagnose, exercise, gap, same

__all__: list[str] = []

_ROW = (2, 3, 3)  # one h's shape in the checks


# ------------------------------------------------------------------------------------------ 10.1
def _rows(n: int, rng: torch.Generator) -> torch.Tensor:
    return torch.randn(n, *_ROW, generator=rng, dtype=torch.float64)


def _norms(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).norm(dim=1).view(-1, *[1] * (x.dim() - 1))


def _with_norms(x: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
    return x / _norms(x) * norms.view(-1, *[1] * (x.dim() - 1))


def _linear(a, b, g):
    return (1 - g) * a + g * b


def _textbook(a, b, g):
    """sin((1−γ)θ)/sin θ · a + sin(γθ)/sin θ · b on the raw rows (right only where ‖a‖ = ‖b‖)."""
    ua, ub = a / _norms(a), b / _norms(b)
    theta = torch.arccos((ua * ub).flatten(1).sum(1).clamp(-1, 1)).view(-1, *[1] * (a.dim() - 1))
    return (torch.sin((1 - g) * theta) * a + torch.sin(g * theta) * b) / torch.sin(theta)


def _whole_batch(a, b, g):
    """The library's slerp with the whole batch taken as one vector."""
    return slerp(a.reshape(1, -1), b.reshape(1, -1), g).view(a.shape)


def _slerp_out(fn, a, b, g, what="your slerp"):
    out = call(fn, a.clone(), b.clone(), g, name="your slerp")
    if isinstance(out, torch.Tensor) and out.shape == a.shape and not torch.isfinite(out).all():
        raise Wrong(f"{what} gave NaN or infinite values" + (
            " for rows that point the same way: there sin θ = 0, so fall back to the linear blend "
            "(1 − γ)·a + γ·b where sin θ is (nearly) 0" if same(_norms(a) * b, _norms(b) * a) else
            ": θ = arccos(⟨a, b⟩ / (‖a‖‖b‖)); divide the dot product by both norms (and clamp it to [−1, 1]) "
            "before arccos"))
    return as_tensor(out, a, what)


def _check_slerp(fn, rng):
    n = 3
    a = _rows(n, rng)
    b = _with_norms(_rows(n, rng), _norms(a).flatten() * (1.5 + torch.rand(n, generator=rng, dtype=torch.float64)))
    # the ends: γ = 0 is h itself, γ = 1 the content's
    for g, end, other in ((0.0, a, b), (1.0, b, a)):
        mine = _slerp_out(fn, a, b, g)
        if not same(mine, end):
            must = f"at γ = {g:g} you must return {'a (h itself)' if g == 0 else 'b (the content h)'}"
            if same(mine, other) or same(mine, other / _norms(other) * _norms(end)):
                raise Wrong(f"{must}; yours turns to the other one: γ is the share of b, so sin((1−γ)θ)/sin θ "
                            "goes with a and sin(γθ)/sin θ with b")
            raise Wrong(f"{must} (yours is off by up to {gap(mine, end):.3g})")
    # rows of one norm: the textbook formula
    g = float(torch.empty(()).uniform_(0.25, 0.75, generator=rng))
    b1 = _with_norms(_rows(n, rng), _norms(a).flatten())
    mine = _slerp_out(fn, a, b1, g)
    ref = slerp(a, b1, g)
    if not same(mine, ref):
        lin = _linear(a, b1, g)
        raise Wrong(diagnose(mine, [
            (lin, "you interpolated linearly: (1 − γ)·a + γ·b cuts the chord, so the norm dips between them; slerp "
                  "moves along the arc, with the weights sin((1−γ)θ)/sin θ and sin(γθ)/sin θ"),
            (_with_norms(lin, _norms(a).flatten()), "you normalised the linear blend: its norm is right, but it does "
                                                    "not turn at a constant speed; use the weights sin((1−γ)θ)/sin θ "
                                                    "and sin(γθ)/sin θ"),
            (slerp(a, b1, 1 - g), "the weights are swapped: sin((1−γ)θ)/sin θ multiplies a, sin(γθ)/sin θ "
                                  "multiplies b"),
            (_whole_batch(a, b1, g), "each row is its own vector: take θ (and the norms) per row, over the "
                                     "flattened C, H, W of that row, not over the whole batch"),
        ], f"for rows of equal norm your slerp differs from sin((1−γ)θ)/sin θ · a + sin(γθ)/sin θ · b by up to "
           f"{gap(mine, ref):.3g}: check θ = arccos(⟨a, b⟩ / (‖a‖‖b‖)) per row (divide the dot product by both norms)"))
    # rows of different norms: the unit vectors turn, the norm moves linearly
    mine = _slerp_out(fn, a, b, g)
    ref = slerp(a, b, g)
    if not same(mine, ref):
        raise Wrong(diagnose(mine, [
            (_textbook(a, b, g), "right where ‖a‖ = ‖b‖, but h and the content's h differ in norm: slerp the unit "
                                 "vectors a/‖a‖ and b/‖b‖, then scale by (1 − γ)·‖a‖ + γ·‖b‖"),
            (_with_norms(ref, _norms(a).flatten()), "the norm should move from ‖a‖ to ‖b‖: scale by "
                                                    "(1 − γ)·‖a‖ + γ·‖b‖, not by ‖a‖"),
            (_whole_batch(a, b, g), "each row is its own vector: take θ and the norms per row, over the flattened "
                                    "C, H, W of that row, not over the whole batch"),
        ], f"for rows of different norms your slerp differs from the library's by up to {gap(mine, ref):.3g}: "
           "slerp the unit vectors, then scale by (1 − γ)·‖a‖ + γ·‖b‖"))
    # a row with itself (and with a multiple of itself): θ = 0
    same_dir = torch.zeros(2, *_ROW, dtype=torch.float64)
    same_dir[0] = a[0]
    same_dir[1, 0, 1, 2] = 3.0  # one coordinate: ⟨a, a⟩ / ‖a‖² is exactly 1
    for other, what in ((same_dir, "itself"), (2 * same_dir, "twice itself")):
        mine = _slerp_out(fn, same_dir, other, g, what=f"your slerp of a row with {what}")
        ref = slerp(same_dir, other, g)
        if not same(mine, ref):
            raise Wrong(f"slerp of a row with {what} should be {'the row itself' if what == 'itself' else '(1 + γ) times the row'}"
                        f" (θ = 0: fall back to the linear blend where sin θ is nearly 0); yours is off by up to "
                        f"{gap(mine, ref):.3g}")


exercise("10.1", "10_hspace_methods", "slerp: content injection's blend of h", [
    Part("slerp", "asyrp_lib.beyond.injection:slerp", _check_slerp, symbol="slerp(h, h^content; γ)"),
])


# ------------------------------------------------------------------------------------------ 10.2
def _labelled(rng: torch.Generator, n: int = 10):
    h = torch.randn(n, *_ROW, generator=rng, dtype=torch.float64)
    y = torch.zeros(n, dtype=torch.bool)
    y[torch.randperm(n, generator=rng)[: n // 2 - 1]] = True  # unequal classes: the mean of all is not the middle
    w = torch.randn(*_ROW, generator=rng, dtype=torch.float64) * (2.5 + torch.rand((), generator=rng,
                                                                                   dtype=torch.float64))
    h = h + 1.5 * y.double().view(-1, 1, 1, 1) * w / w.norm()  # the positives sit further along w
    return h, y, w


def _check_boundary_delta(fn, rng):
    h, y, w = _labelled(rng)
    c = float(torch.empty(()).uniform_(1.5, 3.5, generator=rng))
    out = call(fn, h.clone(), y.clone(), w.clone(), c, name="your boundary_delta")
    if isinstance(out, torch.Tensor) and out.shape == h.shape:
        raise Wrong(f"return Δh alone, one for every face: shape {tuple(h.shape[1:])} (one h's shape), not one per "
                    f"face {tuple(h.shape)}")
    mine = as_tensor(out, w, "your Δh")
    ref = boundary_delta(h, y, w, c)
    if same(mine, ref):
        return
    n = w / w.norm()
    flat, nf = h.flatten(1), n.flatten()
    proj = flat @ nf
    d = proj[y].mean() - proj[~y].mean()
    raw = flat @ w.flatten()
    mean_gap = (h[y].mean(0) - h[~y].mean(0))
    raise Wrong(diagnose(mine, [
        (c * d * w, "n is the *unit* normal: divide normal by its norm ‖normal‖ (the classifier's w need not have "
                    "length 1)"),
        (c * (raw[y].mean() - raw[~y].mean()) * w, "n is the *unit* normal: divide normal by its norm before you "
                                                   "project h on it and before you step along it"),
        (c * (raw[y].mean() - raw[~y].mean()) * n, "project h on the *unit* normal n = normal / ‖normal‖: with the "
                                                   "raw normal, d is ‖normal‖ times too large"),
        (-c * d * n, "the step points away from the attribute: d = mean over the faces *with* it (labels True) "
                     "minus the mean over those without"),
        (d * n, "multiply by the strength c as well: Δh = c · d · n"),
        (c * n, "Δh = c · d · n: the step is c class-mean distances d long, not c"),
        (c * proj.mean() * n, "d is the gap between the two classes' mean projections, mean_{y=1} n·h − "
                              "mean_{y=0} n·h, not the mean projection of all faces"),
        (c * mean_gap.norm() * n, "d is measured along n: project each h on n (n·h) before taking the class means, "
                                  "rather than the length of the difference of the mean h"),
        (c * mean_gap, "step along the normal n, not along the difference of the class means: Δh = c · d · n, "
                       "d = mean_{y=1} n·h − mean_{y=0} n·h"),
    ], f"your Δh differs from c · d · n by up to {gap(mine, ref):.3g}: n = normal / ‖normal‖, d = mean_{{y=1}} n·h "
       "− mean_{y=0} n·h"))


exercise("10.2", "10_hspace_methods", "the boundary's edit Δh = c · d · n", [
    Part("boundary_delta", "asyrp_lib.beyond.boundary:boundary_delta", _check_boundary_delta, symbol="Δh"),
])
