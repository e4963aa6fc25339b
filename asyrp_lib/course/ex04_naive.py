r"""Checks of notebook 04 (naive edits): the ε-shift in both terms of one DDIM step and its coefficients; the
x_T optimisation loop.

=======  ===============================================================  =============================================
exercise  the student writes                                               the library's version
=======  ===============================================================  =============================================
04.1      ``eps_shift_step(x_t, eps, delta_eps, alpha_t, alpha_prev)``     :func:`reference_eps_shift_step` (ε + Δε in
          → x_{t−1} = √ᾱ_{t−1}·P_t(ε + Δε) + D_t(ε + Δε)  (η = 0)          both terms of ``ddim.ddim_step``)
          ``shift_coefficients(alpha_t, alpha_prev)`` → (coef_p, coef_d)   :func:`reference_shift_coefficients` (the
          the coefficients of Δε in the P_t term and in D_t                 coefficients of :func:`asyrp_lib.core.naive.interference`)
04.2      ``optimize_xT_loop(x_T_init, sample, loss_fn, iters, lr)``       :func:`reference_optimize_xT_loop` (the loop
          → (x_T, losses): Adam on x_T through the sampler                  of :func:`asyrp_lib.core.naive.optimize_xT`)
=======  ===============================================================  =============================================

The change of x_{t−1} is (coef_p + coef_d)·Δε with coef_p = −√ᾱ_{t−1}·√(1 − ᾱ_t)/√ᾱ_t and coef_d = √(1 − ᾱ_{t−1}):
opposite signs, nearly equal sizes. ``alpha`` is ᾱ (the cumulative product); the inputs are random tensors and
random ᾱ_t < ᾱ_{t−1} of the linear schedule, a fresh draw each time, and the last step (ᾱ_{t−1} = 1, no D_t).
The x_T loop is checked on a small differentiable stand-in for the sampler (a channel-mixing map and tanh) with a
directional loss, a random number of iterations and learning rate.
"""
from __future__ import annotations

import torch

from ..core import ddim, naive
from .checks import Part, Wrong, as_tensor, call, diagnose, exercise, gap, same

__all__ = ["reference_eps_shift_step", "reference_shift_coefficients", "reference_optimize_xT_loop"]

_SCHEDULE = ddim.Schedule.linear()


def reference_eps_shift_step(x_t, eps, delta_eps, alpha_t, alpha_prev):
    """x_{t−1} of one deterministic DDIM step (η = 0) with ε + Δε in both P_t and D_t: the naive ε-shift
    (:func:`asyrp_lib.core.ddim.ddim_step` fed ε + Δε, as :func:`asyrp_lib.core.naive.apply_delta_eps` runs it)."""
    return ddim.ddim_step(x_t, eps + delta_eps, alpha_t, alpha_prev).x_prev


def reference_shift_coefficients(alpha_t, alpha_prev):
    """(coef_p, coef_d): the change of the P_t term √ᾱ_{t−1}·P_t and of D_t per unit Δε in one DDIM step (η = 0),
    as :func:`asyrp_lib.core.naive.interference` computes them (0-d float64 tensors)."""
    one = torch.ones(1, dtype=torch.float64)
    inter = naive.interference(0 * one, 0 * one, one, alpha_t, alpha_prev)
    return torch.tensor(inter.coef_p, dtype=torch.float64), torch.tensor(inter.coef_d, dtype=torch.float64)


def _draw(rng: torch.Generator, shape=(2, 3, 8, 8)):
    """x_t, ε, Δε and a random pair (ᾱ_t, ᾱ_{t−1}) of the linear schedule (t − t_prev between 20 and 100)."""
    t = int(torch.randint(120, 999, (1,), generator=rng))
    t_prev = t - int(torch.randint(20, 101, (1,), generator=rng))
    x, eps, d = (torch.randn(shape, generator=rng) for _ in range(3))
    return x, eps, d, _SCHEDULE.alpha(t), _SCHEDULE.alpha(t_prev)


# ------------------------------------------------------------------------------------------ 04.1
def _step_mistakes(x, eps, d, a_t, a_p):
    """The outputs of the known wrong steps, with what to say."""
    P = lambda e, a=a_t: (x - (1 - a).sqrt() * e) / a.sqrt()  # noqa: E731
    D = lambda e, a=a_p: (1 - a).sqrt() * e  # noqa: E731
    e = eps + d
    return [
        (a_p.sqrt() * P(e) + D(eps), "Δε reaches P_t only: that is the asymmetric step of notebook 05, not the naive "
                                     "edit; the ε-shift feeds ε + Δε to D_t as well"),
        (a_p.sqrt() * P(eps) + D(e), "Δε reaches D_t only: the ε-shift feeds ε + Δε to P_t as well"),
        (a_p.sqrt() * P(eps) + D(eps), "your step ignores Δε: both terms take the shifted prediction ε + Δε"),
        (a_p.sqrt() * P(eps - d) + D(eps - d), "look at the sign of Δε: the shifted noise prediction is ε + Δε"),
        (a_p.sqrt() * P(e) - D(e), "look at the sign of D_t: x_{t−1} = √ᾱ_{t−1}·P_t + D_t"),
        (a_p.sqrt() * (x + (1 - a_t).sqrt() * e) / a_t.sqrt() + D(e),
         "look at the sign of the noise term in P_t: P_t = (x_t − √(1 − ᾱ_t)·ε) / √ᾱ_t"),
        (a_t.sqrt() * P(e) + D(e, a_t), "your step gives x_t back: P_t is scaled by √ᾱ_{t−1} and D_t takes "
                                        "√(1 − ᾱ_{t−1}), the level the step goes to; you used ᾱ_t in both"),
        (a_p.sqrt() * P(e) + D(e, a_t), "D_t takes ᾱ_{t−1}, the level the step goes to: √(1 − ᾱ_{t−1}); you used ᾱ_t"),
        (a_t.sqrt() * P(e) + D(e), "P_t is scaled by √ᾱ_{t−1}, the level the step goes to; you used ᾱ_t"),
        (a_p.sqrt() * P(e, a_p) + D(e), "inside P_t the level is the one the step starts from: "
                                        "(x_t − √(1 − ᾱ_t)·ε) / √ᾱ_t; you used ᾱ_{t−1}"),
        (P(e) + D(e), "the P_t term of x_{t−1} is √ᾱ_{t−1}·P_t: your step leaves out the factor √ᾱ_{t−1}"),
        (a_p.sqrt() * P(e), "x_{t−1} = √ᾱ_{t−1}·P_t + D_t: your step leaves D_t out"),
    ]


def _check_eps_shift_step(fn, rng):
    x, eps, d, a_t, a_p = _draw(rng)
    cases = [
        (d, a_p, ""),
        (d[0], a_p, "with one Δε of one image's shape (C, H, W), shared by the batch"),
        (d, torch.tensor(1.0), "at the last step (ᾱ_{t−1} = 1, where D_t = 0)"),
    ]
    for delta, low, where in cases:
        mine = as_tensor(call(fn, x, eps, delta, a_t, low, name="your eps_shift_step"), x, "your x_{t−1}")
        ref = reference_eps_shift_step(x, eps, delta, a_t, low)
        if same(mine, ref):
            continue
        message = diagnose(mine, _step_mistakes(x, eps, delta.expand_as(x), a_t, low),
                           f"your x_{{t−1}} differs from √ᾱ_{{t−1}}·P_t(ε + Δε) + D_t(ε + Δε) by up to "
                           f"{gap(mine, ref):.3g}: compare it term by term with eq. 2")
        raise Wrong(message + (f" ({where}; the general case passes)" if where else ""))


def _pair(value, what: str):
    if isinstance(value, torch.Tensor) and value.numel() == 2:
        value = tuple(value.flatten())
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise Wrong(f"{what} should return two numbers, (coef_p, coef_d); got {type(value).__name__}"
                    + (f" of length {len(value)}" if isinstance(value, (tuple, list)) else ""))
    like = torch.zeros((), dtype=torch.float64)
    return (as_tensor(value[0], like, "your coef_p").reshape(()).double(),
            as_tensor(value[1], like, "your coef_d").reshape(()).double())


def _check_shift_coefficients(fn, rng):
    _, _, _, a_t, a_p = _draw(rng)
    for low, where in ((a_p, ""), (torch.tensor(1.0), " at the last step (ᾱ_{t−1} = 1)")):
        cp, cd = _pair(call(fn, a_t, low, name="your shift_coefficients"), "your shift_coefficients")
        ref_p, ref_d = reference_shift_coefficients(a_t, low)
        at, ap = a_t.double(), low.double()
        if not same(cp, ref_p):
            raise Wrong(diagnose(cp, [
                (-ref_p, "look at the sign of coef_p: P_t subtracts the noise, so a larger ε lowers P_t "
                         "(coef_p < 0)"),
                (-(1 - at).sqrt() / at.sqrt(), "that is the coefficient of ΔP_t itself; coef_p is that of the P_t "
                                               "term of x_{t−1}, √ᾱ_{t−1}·ΔP_t: multiply by √ᾱ_{t−1}"),
                (-(1 - at).sqrt(), "the P_t term is scaled by √ᾱ_{t−1}, the level the step goes to; you used ᾱ_t"),
                (-ap.sqrt() * (1 - ap).sqrt() / at.sqrt(), "inside P_t the noise is scaled by √(1 − ᾱ_t), not "
                                                           "√(1 − ᾱ_{t−1})"),
                (-ap * (1 - at) / at, "your coef_p has no square roots: P_t and the step scale by √ᾱ and √(1 − ᾱ), "
                                      "not by ᾱ and 1 − ᾱ"),
                (ref_d, "you returned D_t's coefficient as coef_p: the order is (coef_p, coef_d)"),
            ], f"your coef_p{where} is {float(cp):.4g}, expected {float(ref_p):.4g}: write √ᾱ_{{t−1}}·P_t(ε + Δε) − "
               f"√ᾱ_{{t−1}}·P_t(ε) with P_t of eq. 2, and read off the factor of Δε"))
        if not same(cd, ref_d):
            raise Wrong(diagnose(cd, [
                ((1 - at).sqrt(), "D_t takes ᾱ_{t−1}, the level the step goes to: coef_d = √(1 − ᾱ_{t−1}); "
                                  "you used ᾱ_t"),
                (-ref_d, "look at the sign of coef_d: D_t = +√(1 − ᾱ_{t−1})·ε"),
                (ap.sqrt(), "D_t's factor is √(1 − ᾱ_{t−1}), not √ᾱ_{t−1}"),
                (1 - ap, "take the square root: coef_d = √(1 − ᾱ_{t−1})"),
                (ref_p, "you returned the P_t term's coefficient as coef_d: the order is (coef_p, coef_d)"),
            ], f"your coef_d{where} is {float(cd):.4g}, expected √(1 − ᾱ_{{t−1}}) = {float(ref_d):.4g}"))


exercise("04.1", "04_naive_edits", "the ε-shift in both terms of a DDIM step, and its coefficients", [
    Part("eps_shift_step", "asyrp_lib.course.ex04_naive:reference_eps_shift_step", _check_eps_shift_step,
         symbol="x_{t−1} with ε + Δε in P_t and D_t", label="ε-shift step (ddim.ddim_step fed ε + Δε)",
         guards=("asyrp_lib.core.ddim:ddim_step",)),
    Part("shift_coefficients", "asyrp_lib.course.ex04_naive:reference_shift_coefficients", _check_shift_coefficients,
         symbol="(coef_p, coef_d)", label="coefficients (as naive.interference)",
         guards=("asyrp_lib.core.naive:interference", "asyrp_lib.core.naive:interference_coefficients")),
])


# ------------------------------------------------------------------------------------------ 04.2
def reference_optimize_xT_loop(x_T_init, sample, loss_fn, iters, lr):
    """The loop of :func:`asyrp_lib.core.naive.optimize_xT`: Adam on a copy of x_T, ``iters`` times: the loss of the
    sampled images, gradients cleared, backward, one step. Returns (the optimised x_T, detached; the loss of each
    iteration, before its step)."""
    x_T = x_T_init.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([x_T], lr=lr)
    losses = []
    for _ in range(int(iters)):
        loss = loss_fn(sample(x_T))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return x_T.detach(), losses


def _variant(x_T_init, sample, loss_fn, iters, lr, *mistakes: str):
    """The reference loop with known mistakes: ``"no_clear"`` (gradients never cleared), ``"maximize"`` (ascent),
    ``"sgd"`` (plain SGD), ``"after"`` (losses recorded after the step)."""
    unknown = set(mistakes) - {"no_clear", "maximize", "sgd", "after"}
    if unknown:
        raise ValueError(f"_variant: unknown mistakes {sorted(unknown)}")
    clear, maximize, sgd, after = ("no_clear" not in mistakes, "maximize" in mistakes, "sgd" in mistakes,
                                   "after" in mistakes)
    x_T = x_T_init.detach().clone().requires_grad_(True)
    opt = (torch.optim.SGD([x_T], lr=lr, maximize=maximize) if sgd
           else torch.optim.Adam([x_T], lr=lr, maximize=maximize))
    losses = []
    for _ in range(int(iters)):
        loss = loss_fn(sample(x_T))
        if clear:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if after:
            with torch.no_grad():
                loss = loss_fn(sample(x_T))
        losses.append(float(loss.detach()))
    return x_T.detach(), losses


def _toy_problem(rng: torch.Generator):
    """A small differentiable 'sampler' (a channel-mixing map and tanh) and a directional loss, like S and eq. 3."""
    w = torch.randn(3, 3, generator=rng) / 2 + torch.eye(3)
    b = 0.1 * torch.randn(3, 1, 1, generator=rng)
    x_T = torch.randn(2, 3, 4, 4, generator=rng)
    source = torch.tanh(torch.einsum("nchw,cd->ndhw", x_T, w) + b).detach()
    direction = torch.randn(1, 48, generator=rng)

    def sample(z):
        return torch.tanh(torch.einsum("nchw,cd->ndhw", z, w) + b)

    def loss_fn(images):
        change = (images - source).flatten(1) + 1e-3
        return (1 - torch.nn.functional.cosine_similarity(change, direction, dim=1)).mean()

    iters = int(torch.randint(3, 7, (1,), generator=rng))
    lr = float(torch.empty(()).uniform_(0.02, 0.1, generator=rng))
    return x_T, sample, loss_fn, iters, lr


def _check_optimize_xT_loop(fn, rng):
    x_T_init, sample, loss_fn, iters, lr = _toy_problem(rng)
    kept = x_T_init.clone()
    out = call(fn, x_T_init, sample, loss_fn, iters, lr, name="your optimize_xT_loop")
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise Wrong(f"your optimize_xT_loop should return two things, (x_T, losses); got {type(out).__name__}")
    if not torch.equal(x_T_init, kept):
        raise Wrong("your loop changed x_T_init itself: optimise a copy (x_T_init.clone(), with requires_grad)")
    x_T, losses = out
    x_T = as_tensor(x_T.detach() if isinstance(x_T, torch.Tensor) else x_T, x_T_init, "your x_T")
    try:
        losses = torch.tensor([float(torch.as_tensor(v).detach()) for v in losses], dtype=torch.float64)
    except (TypeError, ValueError):
        raise Wrong("the losses should be a list of numbers, one per iteration (loss.item())") from None
    ref_x, ref_losses = reference_optimize_xT_loop(x_T_init, sample, loss_fn, iters, lr)
    ref_losses = torch.tensor(ref_losses, dtype=torch.float64)
    if same(x_T, x_T_init) and not same(ref_x, x_T_init):
        raise Wrong("your x_T did not move: take an optimiser step after each backward pass (and return the "
                    "optimised tensor, not x_T_init)")
    if same(x_T, ref_x):
        if losses.shape != ref_losses.shape:
            raise Wrong(f"return one loss per iteration: {iters} iterations, {len(losses)} losses")
        if not same(losses, ref_losses):
            _, after = _variant(x_T_init, sample, loss_fn, iters, lr, "after")
            raise Wrong("your x_T is right but not the losses: record each iteration's loss, the one its gradient "
                        "came from (before the step)" if same(losses, torch.tensor(after, dtype=torch.float64))
                        else "your x_T is right but not the losses: one loss.item() per iteration, in order")
        return
    raise Wrong(diagnose(x_T, [
        (_variant(x_T_init, sample, loss_fn, iters, lr, "no_clear")[0],
         "the gradients add up from one iteration to the next: clear them (optimizer.zero_grad()) before each "
         "backward pass"),
        (_variant(x_T_init, sample, loss_fn, iters, lr, "maximize")[0],
         "your loop climbs the loss: the optimiser should minimise it (no minus sign, no maximize)"),
        (_variant(x_T_init, sample, loss_fn, iters, lr, "sgd")[0],
         "use Adam (torch.optim.Adam) on x_T, with the learning rate lr, as the library does"),
        (_variant(x_T_init, sample, loss_fn, iters, lr, "no_clear", "sgd")[0],
         "use Adam (torch.optim.Adam) on x_T, and clear the gradients before each backward pass"),
        (reference_optimize_xT_loop(x_T_init, sample, loss_fn, iters, 1e-3)[0],
         "pass the learning rate: torch.optim.Adam([x_T], lr=lr)"),
        (reference_optimize_xT_loop(x_T_init, sample, loss_fn, iters - 1, lr)[0],
         f"your loop takes {iters - 1} steps: it should take iters = {iters}"),
        (reference_optimize_xT_loop(x_T_init, sample, loss_fn, iters + 1, lr)[0],
         f"your loop takes {iters + 1} steps: it should take iters = {iters}"),
    ], f"after {iters} iterations your x_T differs from the library's loop by up to {gap(x_T, ref_x):.3g}: each "
       "iteration is loss of sample(x_T), zero_grad, backward, Adam step"))


exercise("04.2", "04_naive_edits", "the x_T optimisation loop", [
    Part("optimize_xT_loop", "asyrp_lib.course.ex04_naive:reference_optimize_xT_loop", _check_optimize_xT_loop,
         symbol="the optimised x_T", label="x_T loop (as naive.optimize_xT)",
         guards=("asyrp_lib.core.naive:optimize_xT",)),
])
