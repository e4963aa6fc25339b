r"""Checks of notebook 05 (h-space): the asymmetric step of eq. 4–5.

=======  ==========================================================================  ===============================
exercise  the student writes                                                          the library's version
=======  ==========================================================================  ===============================
05.1      ``asymmetric_step(hs, x_t, t, delta_h, alpha_t, alpha_prev)`` → x_{t−1}      :func:`reference_asymmetric_step`
          = √ᾱ_{t−1}·P_t(ε̃) + D_t(ε), ε̃ = ε^θ(x_t | h_t + Δh_t), ε = ε^θ(x_t)           (``process.advance`` of one edit
                                                                                      step, as ``editing.apply_delta_h``)
=======  ==========================================================================  ===============================

The check runs the student's step on a tiny random U-Net (:func:`tiny_hspace`, built once per process, float64,
8×8 images; a step takes milliseconds), with random x_t, Δh, t and t_prev, at an inner step and at the last
one (ᾱ_{t−1} = 1, where D_t vanishes), and with Δh of h's shape and with one row per image.
"""
from __future__ import annotations

import functools

import torch

from ..core import ddim
from ..core.hspace import HSpaceUNet
from ..core.process import DeltaH, ProcessStep, advance
from .checks import Part, Wrong, as_tensor, call, diagnose, exercise, gap, same

__all__ = ["reference_asymmetric_step", "tiny_hspace"]

_SCHEDULE = ddim.Schedule.linear()
_SIZE = 8  # image side of the tiny U-Net (h: 16×4×4)


def reference_asymmetric_step(hs, x_t, t, delta_h, alpha_t, alpha_prev):
    """x_{t−1} of one step of the editing phase (eq. 4–5, η = 0): √ᾱ_{t−1}·P_t(ε̃) + D_t(ε), with ε̃ the U-Net's ε
    from h_t + Δh_t and ε its plain ε, both from one encoder pass. The library's own step: the edit
    :class:`asyrp_lib.core.process.DeltaH` then :func:`asyrp_lib.core.process.advance`, as ``editing.apply_delta_h`` runs it.

    ``hs``: an :class:`asyrp_lib.core.hspace.HSpaceUNet`; ``x_t``: (N, C, H, W); ``t``: the timestep (int);
    ``delta_h``: Δh_t, of h's shape (C_h, H_h, W_h) or (N, C_h, H_h, W_h); ``alpha_t``, ``alpha_prev``: ᾱ_t and
    ᾱ_{t−1}."""
    n = x_t.shape[0]
    eps_edit, eps = DeltaH(_as_source(delta_h))(hs, x_t, t, 0, n)
    step = ProcessStep(index=0, t=int(t), t_prev=int(t) - 1, phase="edit", n=n, x_t=x_t, eps=eps, eps_edit=eps_edit,
                       alpha_t=torch.as_tensor(alpha_t), alpha_prev=torch.as_tensor(alpha_prev))
    return advance(step, asymmetric=True)


def _as_source(delta_h: torch.Tensor):
    """A Δh for :class:`DeltaH`: one tensor of h's shape as it is; one row per image as a function of h (DeltaH
    reads a stack of tensors as one per step)."""
    if delta_h.dim() == 4 and delta_h.shape[0] > 1:
        return lambda h, tt: delta_h.to(h.dtype)  # noqa: E731
    return delta_h.reshape(delta_h.shape[-3:])


@functools.lru_cache(maxsize=1)
def tiny_hspace() -> HSpaceUNet:
    """A tiny random U-Net (8×8 images, h of shape 16×4×4), in float64, wrapped as an :class:`HSpaceUNet`."""
    from diffusers import UNet2DModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        unet = UNet2DModel(sample_size=_SIZE, in_channels=3, out_channels=3, block_out_channels=(8, 16),
                           layers_per_block=1, norm_num_groups=4, attention_head_dim=4,
                           down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                           up_block_types=("AttnUpBlock2D", "UpBlock2D"))
        with torch.no_grad():
            for p in unet.parameters():  # layers that start at zero would hide a path: every one matters here
                if p.abs().sum() == 0:
                    p.normal_(0, 0.05)
    unet = unet.double().eval().requires_grad_(False)
    return HSpaceUNet(unet)


# ------------------------------------------------------------------------------------------ 05.1
def _draw(rng: torch.Generator, hs: HSpaceUNet, n: int = 2):
    """x_t, Δh (h's shape, of a size that changes ε clearly), t and (ᾱ_t, ᾱ_{t−1}), t − t_prev between 20 and 100."""
    t = int(torch.randint(120, 999, (1,), generator=rng))
    t_prev = t - int(torch.randint(20, 101, (1,), generator=rng))
    x = torch.randn(n, 3, _SIZE, _SIZE, generator=rng, dtype=torch.float64)
    c, hh, ww = hs.h_shape(_SIZE)
    delta_h = 2.0 * torch.randn(c, hh, ww, generator=rng, dtype=torch.float64)
    return x, delta_h, t, _SCHEDULE.alpha(t).double(), _SCHEDULE.alpha(t_prev).double()


def _mistakes(hs, x, t, delta_h, a_t, a_p):
    """The outputs of the known wrong steps, with what to say."""
    with torch.no_grad():
        enc = hs.encode(x, t)
        eps = hs.decode(enc)
        eps_edit = hs.decode(enc, enc.h + delta_h)
        eps_minus = hs.decode(enc, enc.h - delta_h)
    P = lambda e, a=a_t: (x - (1 - a).sqrt() * e) / a.sqrt()  # noqa: E731
    D = lambda e, a=a_p: (1 - a).sqrt() * e  # noqa: E731
    return [
        (a_p.sqrt() * P(eps_edit) + D(eps_edit), "ε̃ reaches D_t too: that is the symmetric step, whose changes in P_t "
                                                 "and D_t nearly cancel (notebook 04); D_t keeps the original ε"),
        (a_p.sqrt() * P(eps) + D(eps), "your step does not see Δh: ε̃ must come from the shifted bottleneck, "
                                       "h_t + Δh_t handed to the decoder (your ε̃ equals the plain ε)"),
        (a_p.sqrt() * P(eps_minus) + D(eps), "Δh is subtracted: the edited bottleneck is h_t + Δh_t"),
        (a_p.sqrt() * P(eps) + D(eps_edit), "the edit is in the wrong term: ε̃ feeds P_t, the original ε feeds D_t"),
        (a_p.sqrt() * P(eps_minus) + D(eps_minus), "Δh is subtracted, and ε̃ reaches D_t too: the edited bottleneck is "
                                                   "h_t + Δh_t, and D_t keeps the original ε"),
        (a_t.sqrt() * P(eps_edit) + D(eps, a_t), "P_t is scaled by √ᾱ_{t−1} and D_t takes √(1 − ᾱ_{t−1}), the level "
                                                 "the step goes to; you used ᾱ_t in both"),
        (a_p.sqrt() * P(eps_edit) + D(eps, a_t), "D_t takes ᾱ_{t−1}, the level the step goes to: √(1 − ᾱ_{t−1})·ε; "
                                                 "you used ᾱ_t"),
        (a_t.sqrt() * P(eps_edit) + D(eps), "P_t is scaled by √ᾱ_{t−1}, the level the step goes to; you used ᾱ_t"),
        (a_p.sqrt() * P(eps_edit, a_p) + D(eps), "inside P_t the level is the one the step starts from: "
                                                 "(x_t − √(1 − ᾱ_t)·ε̃) / √ᾱ_t; you used ᾱ_{t−1}"),
        (a_p.sqrt() * (x + (1 - a_t).sqrt() * eps_edit) / a_t.sqrt() + D(eps),
         "look at the sign of the noise term in P_t: P_t(ε̃) = (x_t − √(1 − ᾱ_t)·ε̃) / √ᾱ_t"),
        (a_p.sqrt() * P(eps_edit) - D(eps), "look at the sign of D_t: x_{t−1} = √ᾱ_{t−1}·P_t(ε̃) + D_t(ε)"),
        (P(eps_edit) + D(eps), "the P_t term of x_{t−1} is √ᾱ_{t−1}·P_t(ε̃): your step leaves out the factor √ᾱ_{t−1}"),
        (a_p.sqrt() * P(eps_edit), "x_{t−1} = √ᾱ_{t−1}·P_t(ε̃) + D_t(ε): your step leaves D_t out"),
    ]


def _check_asymmetric_step(fn, rng):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tensors this small run fastest on one thread, and the machine may be busy
    try:
        _check(fn, rng)
    finally:
        torch.set_num_threads(threads)


def _check(fn, rng):
    hs = tiny_hspace()
    x, delta_h, t, a_t, a_p = _draw(rng, hs)
    rows = delta_h * torch.randn(x.shape[0], 1, 1, 1, generator=rng, dtype=torch.float64)  # one Δh per image
    cases = [
        (delta_h, a_p, ""),
        (rows, a_p, "with one Δh per image, shape (N, C_h, H_h, W_h)"),
        (delta_h, torch.tensor(1.0, dtype=torch.float64), "at the last step (ᾱ_{t−1} = 1, where D_t = 0)"),
    ]
    for dh, low, where in cases:
        mine = as_tensor(call(fn, hs, x, t, dh, a_t, low, name="your asymmetric_step"), x, "your x_{t−1}")
        ref = reference_asymmetric_step(hs, x, t, dh, a_t, low)
        if same(mine, ref):
            continue
        message = diagnose(mine, _mistakes(hs, x, t, dh, a_t, low),
                           f"your x_{{t−1}} differs from √ᾱ_{{t−1}}·P_t(ε̃) + D_t(ε) by up to {gap(mine, ref):.3g}: "
                           "compare it term by term with eq. 4 (ε̃ from h_t + Δh_t through the decoder, ε the "
                           "plain prediction)")
        raise Wrong(message + (f" ({where}; the general case passes)" if where else ""))


exercise("05.1", "05_h_space", "the asymmetric step (eq. 4–5)", [
    Part("asymmetric_step", "asyrp_lib.course.ex05_hspace:reference_asymmetric_step", _check_asymmetric_step,
         symbol="x_{t−1} = √ᾱ_{t−1}·P_t(ε̃) + D_t(ε)", label="asymmetric step (process.advance, as editing.apply_delta_h)",
         guards=("asyrp_lib.core.ddim:ddim_step", "asyrp_lib.core.process:advance")),
])
