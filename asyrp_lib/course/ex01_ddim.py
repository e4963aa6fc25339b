r"""Checks of notebook 01 (DDIM): P_t, D_t and σ_t (eq. 2), one DDIM step (eq. 1), one inversion step.

=======  =================================================  ==========================================
exercise  the student writes                                 the library's version
=======  =================================================  ==========================================
01.1      ``predicted_x0(x_t, eps, alpha_t)``                 :func:`asyrp_lib.core.ddim.predicted_x0`
          ``direction_to_xt(eps, alpha_prev, sigma=0.0)``     :func:`asyrp_lib.core.ddim.direction_to_xt`
          ``ddim_sigma(alpha_t, alpha_prev, eta)``            :func:`asyrp_lib.core.ddim.ddim_sigma`
01.2      ``ddim_step(x_t, eps, alpha_t, alpha_prev, eta=0.0, noise=None)`` → x_{t−1}   :func:`reference_ddim_step`
01.3      ``inversion_step(x_prev, eps, alpha_prev, alpha_t)`` → x_t                    :func:`reference_inversion_step`
=======  =================================================  ==========================================

``alpha`` is ᾱ (the cumulative product); the inputs are random tensors and random ᾱ_t < ᾱ_{t−1} from the linear
schedule, a fresh draw each time.
"""
from __future__ import annotations

import torch

from ..core import ddim
from .checks import Part, Wrong, as_tensor, call, diagnose, exercise, gap, same

__all__ = ["reference_ddim_step", "reference_inversion_step"]

_SCHEDULE = ddim.Schedule.linear()


def reference_ddim_step(x_t, eps, alpha_t, alpha_prev, eta: float = 0.0, noise=None):
    """x_{t−1} of one DDIM step (eq. 1): the library's :func:`asyrp_lib.core.ddim.ddim_step`, its ``x_prev``."""
    return ddim.ddim_step(x_t, eps, alpha_t, alpha_prev, eta=eta,
                          noise=noise if eta > 0 else None).x_prev


def reference_inversion_step(x_prev, eps, alpha_prev, alpha_t):
    """x_t from x_{t−1}: √ᾱ_t · P(ε) + √(1 − ᾱ_t) · ε with P(ε) = (x_{t−1} − √(1 − ᾱ_{t−1}) ε) / √ᾱ_{t−1}
    (one step of :func:`asyrp_lib.core.ddim.invert`)."""
    return alpha_t.sqrt() * ddim.predicted_x0(x_prev, eps, alpha_prev) + (1 - alpha_t).sqrt() * eps


def _draw(rng: torch.Generator, shape=(2, 3, 8, 8), t_max: int = 999):
    """x, ε and a random pair (ᾱ_t, ᾱ_{t−1}) of the linear schedule, t − t_prev = 50, 60 ≤ t < t_max."""
    t = int(torch.randint(60, t_max, (1,), generator=rng))
    x, eps, z = (torch.randn(shape, generator=rng) for _ in range(3))
    return x, eps, z, _SCHEDULE.alpha(t), _SCHEDULE.alpha(t - 50)


# ------------------------------------------------------------------------------------------ 01.1
def _check_predicted_x0(fn, rng):
    x, eps, _, a, _ = _draw(rng)
    mine = as_tensor(call(fn, x, eps, a, name="your predicted_x0"), x, "your P_t")
    ref = ddim.predicted_x0(x, eps, a)
    if same(mine, ref):
        return
    raise Wrong(diagnose(mine, [
        ((x + (1 - a).sqrt() * eps) / a.sqrt(), "look at the sign of the ε term: P_t takes the noise out, "
                                                "x_t − √(1 − ᾱ_t)·ε"),
        ((x - (1 - a).sqrt() * eps) / a, "divide by √ᾱ_t, not by ᾱ_t"),
        ((x - (1 - a) * eps) / a.sqrt(), "the noise is scaled by √(1 − ᾱ_t), not by (1 − ᾱ_t)"),
        ((x - a.sqrt() * eps) / (1 - a).sqrt(), "ᾱ_t and 1 − ᾱ_t are swapped: the noise carries √(1 − ᾱ_t), "
                                                "the signal √ᾱ_t"),
        (a.sqrt() * (x - (1 - a).sqrt() * eps), "P_t divides by √ᾱ_t (it undoes the signal's scaling); yours "
                                                "multiplies"),
    ], f"your P_t differs from (x_t − √(1 − ᾱ_t)·ε) / √ᾱ_t by up to {gap(mine, ref):.3g}: compare it term by "
       "term with eq. 2"))


def _check_direction_to_xt(fn, rng):
    _, eps, _, a_t, a_prev = _draw(rng)
    mine0 = as_tensor(call(fn, eps, a_prev, 0.0, name="your direction_to_xt"), eps, "your D_t")
    ref0 = ddim.direction_to_xt(eps, a_prev)
    if not same(mine0, ref0):
        raise Wrong(diagnose(mine0, [
            (a_prev.sqrt() * eps, "D_t points back towards the noise: its factor is √(1 − ᾱ_{t−1}), not √ᾱ_{t−1}"),
            ((1 - a_prev) * eps, "take the square root: D_t = √(1 − ᾱ_{t−1} − σ_t²)·ε"),
            (-(1 - a_prev).sqrt() * eps, "look at the sign: D_t = +√(1 − ᾱ_{t−1} − σ_t²)·ε"),
        ], f"at σ_t = 0 your D_t differs from √(1 − ᾱ_{{t−1}})·ε by up to {gap(mine0, ref0):.3g}"))
    sigma = ddim.ddim_sigma(a_t, a_prev, 1.0)
    out = call(fn, eps, a_prev, sigma, name="your direction_to_xt")
    if isinstance(out, torch.Tensor) and out.shape == eps.shape and torch.isnan(out).any() and 1 - a_prev - sigma < 0:
        raise Wrong("your D_t is right at σ_t = 0 but not for σ_t > 0: under the root it is σ_t², not σ_t (yours takes "
                    "the root of a negative number here)")
    mine = as_tensor(out, eps, "your D_t")
    ref = ddim.direction_to_xt(eps, a_prev, sigma)
    if not same(mine, ref):
        raise Wrong(diagnose(mine, [
            ((1 - a_prev - sigma).clamp_min(0).sqrt() * eps, "your D_t is right at σ_t = 0 but not for σ_t > 0: "
                                                             "under the root it is σ_t², not σ_t"),
            ((1 - a_prev).sqrt() * eps, "your D_t ignores σ_t: with η > 0 its factor is √(1 − ᾱ_{t−1} − σ_t²)"),
        ], "your D_t is right at σ_t = 0 but not for σ_t > 0: look at the σ_t term"))


def _check_ddim_sigma(fn, rng):
    _, _, _, a_t, a_prev = _draw(rng, t_max=600)  # near t = T, ᾱ_t ≈ ᾱ_{t−1} ≈ 0 and some mistakes vanish
    zero = as_tensor(call(fn, a_t, a_prev, 0.0, name="your ddim_sigma"), a_t, "your σ_t")
    if not same(zero, torch.zeros(())):
        raise Wrong("with η = 0 σ_t must be 0: deterministic DDIM adds no noise (σ_t is proportional to η)")
    eta = float(torch.empty(()).uniform_(0.3, 0.9, generator=rng))
    mine = as_tensor(call(fn, a_t, a_prev, eta, name="your ddim_sigma"), a_t, "your σ_t")
    ref = ddim.ddim_sigma(a_t, a_prev, eta)
    if same(mine, ref):
        one = as_tensor(call(fn, a_t, a_prev, 1.0, name="your ddim_sigma"), a_t, "your σ_t")
        if same(one, ddim.ddim_sigma(a_t, a_prev, 1.0)):
            return
        mine, ref = one, ddim.ddim_sigma(a_t, a_prev, 1.0)
    raise Wrong(diagnose(mine, [
        (eta ** 2 * ((1 - a_prev) / (1 - a_t)).sqrt() * (1 - a_t / a_prev).sqrt(),
         "σ_t is proportional to η, not η²"),
        (eta * ((1 - a_t) / (1 - a_prev)).sqrt() * (1 - a_t / a_prev).sqrt(),
         "the first root is √((1 − ᾱ_{t−1}) / (1 − ᾱ_t)): you have it upside down"),
        (eta * ((1 - a_prev) / (1 - a_t)).sqrt() * (1 - a_prev / a_t).abs().sqrt(),
         "the second root is √(1 − ᾱ_t / ᾱ_{t−1}): ᾱ_t over ᾱ_{t−1}, not the other way round"),
        (eta * ((1 - a_prev) / (1 - a_t)) * (1 - a_t / a_prev),
         "σ_t has square roots on both factors"),
    ], f"your σ_t differs from η·√((1 − ᾱ_{{t−1}})/(1 − ᾱ_t))·√(1 − ᾱ_t/ᾱ_{{t−1}}) by up to {gap(mine, ref):.3g}"))


exercise("01.1", "01_ddim", "P_t, D_t and σ_t (eq. 2)", [
    Part("predicted_x0", "asyrp_lib.core.ddim:predicted_x0", _check_predicted_x0, symbol="P_t"),
    Part("direction_to_xt", "asyrp_lib.core.ddim:direction_to_xt", _check_direction_to_xt, symbol="D_t"),
    Part("ddim_sigma", "asyrp_lib.core.ddim:ddim_sigma", _check_ddim_sigma, symbol="σ_t"),
])


# ------------------------------------------------------------------------------------------ 01.2
def _check_ddim_step(fn, rng):
    x, eps, z, a_t, a_prev = _draw(rng)
    mine = as_tensor(call(fn, x, eps, a_t, a_prev, 0.0, None, name="your ddim_step"), x, "your x_{t−1}")
    ref = reference_ddim_step(x, eps, a_t, a_prev)
    p_t = ddim.predicted_x0(x, eps, a_t)
    if not same(mine, ref):
        raise Wrong(diagnose(mine, [
            (a_prev.sqrt() * p_t + (1 - a_t).sqrt() * eps, "at η = 0: D_t takes ᾱ_{t−1}, the level the step goes "
                                                          "to; you used ᾱ_t"),
            (a_t.sqrt() * p_t + (1 - a_prev).sqrt() * eps, "at η = 0: P_t is scaled by √ᾱ_{t−1}, not by √ᾱ_t"),
            (a_prev * p_t + (1 - a_prev).sqrt() * eps, "at η = 0: P_t is scaled by √ᾱ_{t−1}, not by ᾱ_{t−1}"),
            (a_prev.sqrt() * p_t - (1 - a_prev).sqrt() * eps, "at η = 0: look at the sign of D_t (it is added)"),
            (a_prev.sqrt() * p_t, "at η = 0: x_{t−1} = √ᾱ_{t−1}·P_t + D_t; your step leaves D_t out"),
        ], f"at η = 0 your x_{{t−1}} differs from √ᾱ_{{t−1}}·P_t + D_t by up to {gap(mine, ref):.3g}"))
    eta = 1.0
    sigma = ddim.ddim_sigma(a_t, a_prev, eta)
    mine = as_tensor(call(fn, x, eps, a_t, a_prev, eta, z, name="your ddim_step"), x, "your x_{t−1}")
    ref = reference_ddim_step(x, eps, a_t, a_prev, eta=eta, noise=z)
    if not same(mine, ref):
        raise Wrong(diagnose(mine, [
            (a_prev.sqrt() * p_t + ddim.direction_to_xt(eps, a_prev, sigma), "with η > 0 add the noise σ_t·z "
                                                                              "(z is the `noise` argument)"),
            (a_prev.sqrt() * p_t + (1 - a_prev).sqrt() * eps + sigma * z, "with η > 0 D_t shrinks: its factor is "
                                                                          "√(1 − ᾱ_{t−1} − σ_t²); look at the σ_t "
                                                                          "term"),
            (a_prev.sqrt() * p_t + ddim.direction_to_xt(eps, a_prev, sigma) + sigma ** 2 * z,
             "the noise is σ_t·z, not σ_t²·z"),
        ], "your step is right at η = 0 but not at η = 1: look at the σ_t terms (in D_t and the added noise)"))


exercise("01.2", "01_ddim", "one DDIM step (eq. 1)", [
    Part("ddim_step", "asyrp_lib.course.ex01_ddim:reference_ddim_step", _check_ddim_step, symbol="x_{t−1}",
         label="ddim.ddim_step", guards=("asyrp_lib.core.ddim:ddim_step",)),
])


# ------------------------------------------------------------------------------------------ 01.3
def _check_inversion_step(fn, rng):
    x, eps, _, a_t, a_prev = _draw(rng)
    for low in (a_prev, torch.tensor(1.0)):  # also the first step, from t_prev = −1 (ᾱ = 1, x is x_0)
        mine = as_tensor(call(fn, x, eps, low, a_t, name="your inversion_step"), x, "your x_t")
        ref = reference_inversion_step(x, eps, low, a_t)
        if same(mine, ref):
            continue
        raise Wrong(diagnose(mine, [
            (a_t.sqrt() * ddim.predicted_x0(x, eps, a_t) + (1 - a_t).sqrt() * eps,
             "P is taken at the level you come from: use ᾱ_{t−1} inside P, ᾱ_t outside"),
            (low.sqrt() * ddim.predicted_x0(x, eps, low) + (1 - low).sqrt() * eps,
             "going up, x_t is built with ᾱ_t: √ᾱ_t·P + √(1 − ᾱ_t)·ε (you used ᾱ_{t−1} there)"),
            (a_t.sqrt() * ddim.predicted_x0(x, eps, low) - (1 - a_t).sqrt() * eps,
             "look at the sign of the ε term: going up adds noise"),
            (a_t.sqrt() * ddim.predicted_x0(x, eps, low), "x_t = √ᾱ_t·P + √(1 − ᾱ_t)·ε: your step leaves out the "
                                                          "ε term"),
        ], f"your x_t differs from √ᾱ_t·P_{{t−1}}(ε) + √(1 − ᾱ_t)·ε by up to {gap(mine, ref):.3g}"
           + (" (at the first step, ᾱ_{t−1} = 1)" if low.item() == 1.0 else "")))


exercise("01.3", "01_ddim", "one inversion step x_{t−1} → x_t", [
    Part("inversion_step", "asyrp_lib.course.ex01_ddim:reference_inversion_step", _check_inversion_step,
         symbol="x_t", label="inversion step (as in ddim.invert)", guards=("asyrp_lib.core.ddim:invert",)),
])
