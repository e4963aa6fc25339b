r"""Checks of notebook 03 (LPIPS): the two curves along a trajectory, and the rule that picks t_edit and t_boost.

=======  ==========================================================================  ===================================
exercise  the student writes                                                          the library's version
=======  ==========================================================================  ===================================
03.1      ``lpips_curves(distance, x, p_ts, x_ts)`` → ``(xi, gamma)``, each ``(K, N)``:   :func:`reference_lpips_curves`
          ξ_t = d(x, P_T) − d(x, P_t) and γ_t = d(x, x_t) along descending timesteps
03.2      ``first_reaching(timesteps, curve, threshold)`` → t                            :func:`reference_first_reaching`
                                                                                          (:func:`asyrp_lib.core.intervals.select_t_edit`)
          ``select_t_edit_t_boost(timesteps, lpips_pt, gamma, edit_threshold,            :func:`reference_select_t_edit_t_boost`
          boost_threshold)`` → ``(t_edit, t_boost)``
=======  ==========================================================================  ===================================

ξ_t = LPIPS(x, P_T) − LPIPS(x, P_t) is the editing strength of the interval [T, t], γ_t = LPIPS(x, x_t) the quality
deficiency. As in the reference implementation, the library thresholds LPIPS(x, P_t) = LPIPS(x, P_T) − ξ_t itself
for t_edit, and γ_t for t_boost: each is the first timestep, counting up from t = 0, at which the mean curve over
the images reaches (≥) its threshold.

The checks use no LPIPS network: the distance is a cheap stand-in (the RMS difference per image), the images and
trajectories small random tensors, the curves made-up values; everything runs in milliseconds.
"""
from __future__ import annotations

import torch

from ..core import intervals
from .checks import Part, Wrong, as_tensor, call, diagnose, exercise, gap, same

__all__ = ["reference_lpips_curves", "reference_first_reaching", "reference_select_t_edit_t_boost",
           "rms_distance"]


def reference_lpips_curves(distance, x, p_ts, x_ts):
    """ξ_t = d(x, P_T) − d(x, P_t) and γ_t = d(x, x_t) for each entry of ``p_ts`` / ``x_ts`` (descending timesteps,
    the first entry at t = T), each a tensor ``(K, N)`` with one row per timestep."""
    d_T = distance(x, p_ts[0])
    xi = torch.stack([d_T - distance(x, p_t) for p_t in p_ts])
    gamma = torch.stack([distance(x, x_t) for x_t in x_ts])
    return xi, gamma


def reference_first_reaching(timesteps, curve, threshold):
    """The first timestep, counting up from t = 0, at which the mean of ``curve`` ``(K, N)`` over the images reaches
    ``threshold`` (the rule of :func:`asyrp_lib.core.intervals.select_t_edit` and ``select_t_boost``); ``ValueError`` if
    it never does."""
    return intervals.select_t_edit(timesteps, curve, threshold)


def reference_select_t_edit_t_boost(timesteps, lpips_pt, gamma, edit_threshold, boost_threshold):
    """(t_edit, t_boost): :func:`asyrp_lib.core.intervals.select_t_edit` on LPIPS(x, P_t) and
    :func:`asyrp_lib.core.intervals.select_t_boost` on γ_t = LPIPS(x, x_t)."""
    return (intervals.select_t_edit(timesteps, lpips_pt, edit_threshold),
            intervals.select_t_boost(timesteps, gamma, boost_threshold))


def rms_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """A cheap stand-in for LPIPS: the root-mean-square difference per image, ``(N,)``."""
    return ((a - b) ** 2).flatten(1).mean(1).sqrt()


# ------------------------------------------------------------------------------------------ 03.1
def _trajectory(rng: torch.Generator, k: int = 7, n: int = 3):
    """Images x (n, 3, 4, 4) and, along k descending timesteps, predictions P_t that come closer to x and noisy
    x_t that carry less noise, as t falls."""
    x = torch.rand(n, 3, 4, 4, generator=rng) * 2 - 1
    far = torch.linspace(1.6, 0.05, k) * (1 + 0.2 * torch.rand(k, generator=rng))
    p_ts = [x + s * torch.randn(x.shape, generator=rng) for s in far]
    alpha = torch.linspace(0.02, 0.98, k)
    noise = torch.randn(x.shape, generator=rng)
    x_ts = [a.sqrt() * x + (1 - a).sqrt() * noise for a in alpha]
    return x, p_ts, x_ts


def _as_curve(value, like: torch.Tensor, what: str, k: int, n: int) -> torch.Tensor:
    if isinstance(value, (list, tuple)):
        raise Wrong(f"{what} is a {type(value).__name__}: stack its rows into one tensor ({k}, {n}) (torch.stack)")
    if isinstance(value, torch.Tensor):
        if tuple(value.shape) == (n, k):
            raise Wrong(f"{what} has shape ({n}, {k}): one row per timestep, shape (K, N) = ({k}, {n}), in the order "
                        "of the lists")
        if tuple(value.shape) == (k,):
            raise Wrong(f"{what} has shape ({k},): keep one value per timestep *and image*, shape (K, N) = ({k}, {n}) "
                        "(no mean over the images)")
    return as_tensor(value, like, what)


def _check_lpips_curves(fn, rng):
    x, p_ts, x_ts = _trajectory(rng)
    k, n = len(p_ts), x.shape[0]
    calls = []

    def distance(a, b):
        calls.append(1)
        return rms_distance(a, b)

    out = call(fn, distance, x.clone(), [p.clone() for p in p_ts], [v.clone() for v in x_ts], name="your lpips_curves")
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise Wrong("return the pair (xi, gamma): two tensors of shape (K, N), one row per timestep")
    xi_ref, gamma_ref = reference_lpips_curves(rms_distance, x, p_ts, x_ts)
    xi = _as_curve(out[0], xi_ref, "your ξ", k, n)
    gamma = _as_curve(out[1], gamma_ref, "your γ", k, n)
    if same(xi, gamma_ref) and same(gamma, xi_ref):
        raise Wrong("your two curves are swapped: return (xi, gamma), ξ first")
    d = lambda seq: torch.stack([rms_distance(x, v) for v in seq])  # noqa: E731
    d_p, d_x = d(p_ts), d(x_ts)
    if not same(xi, xi_ref):
        raise Wrong(diagnose(xi, [
            (d_p - d_p[0], "your ξ_t has the opposite sign: ξ_t = LPIPS(x, P_T) − LPIPS(x, P_t) (0 at t = T, "
                           "growing as P_t comes closer to x)"),
            (d_p, "your ξ_t is LPIPS(x, P_t) itself: ξ_t is how much it has dropped since T, LPIPS(x, P_T) − "
                  "LPIPS(x, P_t)"),
            (d_p[-1] - d_p, "P_T is the *first* entry of p_ts (the timesteps descend from T); yours takes the last"),
            (d_x[0] - d_x, "ξ_t compares x with the predictions P_t (p_ts), not with the noisy x_t (x_ts)"),
            (d_p[0] - d_x, "ξ_t = LPIPS(x, P_T) − LPIPS(x, P_t): yours subtracts LPIPS(x, x_t), the distance to the "
                           "noisy x_t, in place of the distance to P_t"),
            (d_x[0] - d_p, "ξ_t = LPIPS(x, P_T) − LPIPS(x, P_t): P_T is the first prediction p_ts[0], not the first "
                           "noisy x_t"),
            (xi_ref.flip(0), "keep the order of the lists: row k is the k-th timestep, the first row t = T"),
        ], f"your ξ differs from LPIPS(x, P_T) − LPIPS(x, P_t) by up to {gap(xi, xi_ref):.3g}"))
    if not same(gamma, gamma_ref):
        raise Wrong(diagnose(gamma, [
            (d_p, "γ_t = LPIPS(x, x_t) compares x with the noisy x_t (x_ts), not with the predictions P_t"),
            (d_x[0] - d_x, "γ_t is LPIPS(x, x_t) itself, not a difference from its value at T"),
            (d_x - d_x[0], "γ_t is LPIPS(x, x_t) itself, not a difference from its value at T"),
            (gamma_ref.flip(0), "keep the order of the lists: row k is the k-th timestep, the first row t = T"),
        ], f"your γ differs from LPIPS(x, x_t) by up to {gap(gamma, gamma_ref):.3g}"))


exercise("03.1", "03_lpips", "the curves ξ_t and γ_t along a trajectory", [
    Part("lpips_curves", "asyrp_lib.course.ex03_lpips:reference_lpips_curves", _check_lpips_curves,
         symbol="(ξ_t, γ_t)", label="ξ_t and γ_t (ex03_lpips.reference_lpips_curves)",
         guards=("asyrp_lib.core.intervals:lpips_x_pt", "asyrp_lib.core.intervals:lpips_x_xt")),
])


# ------------------------------------------------------------------------------------------ 03.2
_EIGHTH = 0.125


def _crossing_curve(rng: torch.Generator, n: int = 4):
    """Ascending timesteps and a curve (K, n) whose mean over the images crosses the threshold several times:

        below … | exactly the threshold | below … | above | below | above …

    The values are multiples of 1/16, so the mean is exact in any precision. Returns the timesteps, the curve, the
    threshold and the indices (first ≥, first >, last crossing from below, last index)."""
    def r(lo, hi):
        return int(torch.randint(lo, hi + 1, (1,), generator=rng))

    thr = r(6, 10) * _EIGHTH
    lead, dip = r(1, 3), r(1, 2)
    cats = ["L"] * lead + ["E"] + ["L"] * dip + ["H", "L"] + ["H"] * r(2, 3)
    k = len(cats)
    ts = torch.randperm(980, generator=rng)[:k].add(20).sort().values.tolist()
    mean = torch.tensor([thr + {"L": -r(1, 5), "E": 0, "H": r(1, 5)}[c] / 16 for c in cats])
    offsets = []
    for i in range(k):
        a = r(1, 4) / 16 if i else 7 / 16  # at the first, lowest step one image alone is above the threshold
        b = r(1, 4) / 16
        row = torch.tensor([a, -a, b, -b])[torch.randperm(n, generator=rng)]
        offsets.append(row)
    curve = mean.unsqueeze(1) + torch.stack(offsets)
    first_ge = lead
    first_gt = lead + 1 + dip
    last_cross = first_gt + 2
    return ts, curve, thr, (first_ge, first_gt, last_cross, k - 1)


def _int(value, what: str) -> int:
    try:
        if isinstance(value, torch.Tensor) and value.numel() != 1:
            raise TypeError
        return int(value)
    except (TypeError, ValueError):
        raise Wrong(f"{what} should be one timestep (an int); got {type(value).__name__}") from None


def _check_first_reaching(fn, rng):
    ts, curve, thr, (ge, gt, last, top) = _crossing_curve(rng)
    want = reference_first_reaching(ts, curve, thr)
    assert want == ts[ge]
    mean = curve.mean(1)
    any_image = next(i for i in range(len(ts)) if bool((curve[i] >= thr).any()))
    first_image = next((i for i in range(len(ts)) if curve[i, 0] >= thr), None)
    orders = {"descending": list(range(len(ts)))[::-1],
              "ascending": list(range(len(ts))),
              "shuffled": torch.randperm(len(ts), generator=rng).tolist()}
    for how, order in orders.items():
        got = call(fn, [ts[i] for i in order], curve[order].clone(), thr, name="your first_reaching")
        mine = _int(got, "your first_reaching's result")
        if mine == want:
            continue
        messages = {
            ts[gt]: f"at t = {want} the mean curve equals the threshold exactly, and *reaching* it means ≥: yours "
                    f"skipped it (> where ≥ is meant)",
            ts[last]: "take the *first* timestep, counting up from t = 0, at which the mean curve reaches the threshold: "
                      "yours is a later crossing (this curve dips below the threshold again after its first one)",
            ts[top]: "count up from t = 0: yours returns the largest timestep that reaches the threshold (sort the "
                     "timesteps ascending, with their rows of the curve, before you search)",
            ts[any_image]: "the rule reads the *mean* curve over the images (the mean of each row), not each image "
                           "separately",
            ge: f"return the timestep t = {want}, not its index in the list",
        }
        if first_image is not None:
            messages.setdefault(ts[first_image], "the rule reads the mean curve over the images (the mean of each "
                                                 "row), not the first image")
        if mine in messages:
            raise Wrong(messages[mine])
        if how != "descending":
            raise Wrong(f"your answer changes with the order of the timesteps (right when they descend, wrong when "
                        f"{how}): sort them, with their rows of the curve, before counting up from t = 0")
        raise Wrong(f"your first_reaching gives t = {mine}; the mean curve first reaches {thr:g}, counting up from "
                    f"t = 0, at t = {want}")
    # a threshold the mean curve never reaches
    high = float(mean.max()) + 0.25
    try:
        got = fn(ts[::-1], curve.flip(0).clone(), high)
    except ValueError:
        return
    except Exception as exc:  # noqa: BLE001
        raise Wrong(f"when the mean curve never reaches the threshold, raise a ValueError (as the library does); "
                    f"yours raised {type(exc).__name__}") from None
    raise Wrong(f"when the mean curve never reaches the threshold, raise a ValueError (as the library does); yours "
                f"returned {got!r}")


def _rising(rng: torch.Generator, k: int, n: int, cross: tuple[int, int], thresholds: tuple[float, float]):
    """A curve (k, n), rising in t (index = ascending position), whose mean first reaches thresholds[0] at index
    cross[0] and thresholds[1] at index cross[1]."""
    lo, hi = thresholds
    mean = torch.empty(k)
    for i in range(k):
        u = float(torch.rand((), generator=rng))
        if i < cross[0]:
            mean[i] = lo * (0.1 + 0.8 * (i + u) / max(cross[0], 1))
        elif i < cross[1]:
            mean[i] = lo + (hi - lo) * (0.05 + 0.9 * (i - cross[0] + u) / max(cross[1] - cross[0], 1))
        else:
            mean[i] = hi * (1.05 + 0.1 * (i - cross[1] + u))
    mean, _ = torch.cummax(mean, 0)
    spread = 0.04 * torch.randn(k, n, generator=rng)
    return mean.unsqueeze(1) + spread - spread.mean(1, keepdim=True)


def _check_select_t_edit_t_boost(fn, rng):
    k, n = 12, 3
    cuts = sorted(torch.randperm(k - 2, generator=rng)[:4].add(1).tolist())  # γ@edit < γ@boost < P@edit < P@boost
    q1, q2, p1, p2 = cuts
    edit_thr = float(torch.empty(()).uniform_(0.1, 0.3, generator=rng))
    boost_thr = float(torch.empty(()).uniform_(0.6, 1.0, generator=rng))
    lpips_pt = _rising(rng, k, n, (p1, p2), (edit_thr, boost_thr))
    gamma = _rising(rng, k, n, (q1, q2), (edit_thr, boost_thr))
    ts = torch.randperm(980, generator=rng)[:k].add(20).sort().values.tolist()
    t_desc, pt_desc, g_desc = ts[::-1], lpips_pt.flip(0), gamma.flip(0)
    want = reference_select_t_edit_t_boost(t_desc, pt_desc, g_desc, edit_thr, boost_thr)
    assert want == (ts[p1], ts[q2])
    got = call(fn, list(t_desc), pt_desc.clone(), g_desc.clone(), edit_thr, boost_thr,
               name="your select_t_edit_t_boost")
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        raise Wrong("return the pair (t_edit, t_boost)")
    mine = (_int(got[0], "your t_edit"), _int(got[1], "your t_boost"))
    if mine == want:
        return
    t_edit, t_boost = mine
    if mine == (want[1], want[0]):
        raise Wrong("return (t_edit, t_boost) in this order: yours are swapped")
    if (t_edit, t_boost) == (ts[p2], ts[q1]):
        raise Wrong("each curve has its own threshold: edit_threshold for LPIPS(x, P_t), boost_threshold for γ_t "
                    "(yours are swapped)")
    if t_edit != want[0]:
        if t_edit == ts[q1]:
            raise Wrong("t_edit comes from LPIPS(x, P_t) (the `lpips_pt` curve); yours reads γ_t")
        if t_edit == ts[p2]:
            raise Wrong("t_edit compares LPIPS(x, P_t) with edit_threshold; yours uses boost_threshold")
        raise Wrong(f"your t_edit is {t_edit}; the mean LPIPS(x, P_t) first reaches edit_threshold at t = {want[0]}")
    if t_boost == ts[p2]:
        raise Wrong("t_boost comes from γ_t = LPIPS(x, x_t) (the `gamma` curve); yours reads LPIPS(x, P_t)")
    if t_boost == ts[q1]:
        raise Wrong("t_boost compares γ_t with boost_threshold; yours uses edit_threshold")
    raise Wrong(f"your t_boost is {t_boost}; the mean γ_t first reaches boost_threshold at t = {want[1]}")


exercise("03.2", "03_lpips", "choosing t_edit and t_boost", [
    Part("first_reaching", "asyrp_lib.course.ex03_lpips:reference_first_reaching", _check_first_reaching,
         symbol="the first t reaching the threshold", label="first-reaching rule (intervals.select_t_edit)",
         guards=("asyrp_lib.core.intervals:select_t_edit", "asyrp_lib.core.intervals:select_t_boost",
                 "asyrp_lib.core.intervals:_first_reaching")),
    Part("select_t_edit_t_boost", "asyrp_lib.course.ex03_lpips:reference_select_t_edit_t_boost",
         _check_select_t_edit_t_boost, symbol="(t_edit, t_boost)",
         label="choice of t_edit and t_boost (intervals.select_t_edit, select_t_boost)",
         guards=("asyrp_lib.core.intervals:select_t_edit", "asyrp_lib.core.intervals:select_t_boost")),
])
