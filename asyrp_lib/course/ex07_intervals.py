r"""Checks of notebook 07 (the intervals): the phase of each step of the generative process (eq. 6) and its η.

=======  =====================================================  ==========================================
exercise  the student writes                                     the library's version
=======  =====================================================  ==========================================
07.1      ``phase_of(t, t_edit, t_boost)`` → "edit", "plain"      :func:`asyrp_lib.core.process.phase_of`
          or "boost"
          ``eta_of(phase, eta_boost=1.0)`` → η of the phase        :func:`reference_eta_of`
=======  =====================================================  ==========================================

Eq. 6, read in the order the process runs (t from T down to 0): the asymmetric edit for T ≥ t ≥ t_edit (η = 0),
plain DDIM for t_edit > t ≥ t_boost (η = 0), quality boosting for t < t_boost (η = η_boost, 1 in the paper).
The check asks for the phase at both sides of each boundary (t_edit, t_edit − 1, t_boost, t_boost − 1), at the
ends (T − 1 = 999 and 0), at random timesteps, and with the intervals touching (t_boost = t_edit: no plain
phase; t_boost = 0: no boosting).
"""
from __future__ import annotations

import torch

from ..core import process
from .checks import Part, Wrong, call, exercise

__all__ = ["reference_eta_of"]

PHASES = process.PHASES  # ("edit", "plain", "boost")


def reference_eta_of(phase: str, eta_boost: float = 1.0) -> float:
    """η of a step in ``phase``: 0 for "edit" and "plain" (deterministic DDIM), ``eta_boost`` for "boost" (as
    :func:`asyrp_lib.core.process.reverse_process` sets it)."""
    if phase not in PHASES:
        raise ValueError(f"phase: expected one of {', '.join(PHASES)}, got {phase!r}")
    return float(eta_boost) if phase == "boost" else 0.0


# ------------------------------------------------------------------------------------------ 07.1
def _cases(rng) -> list[tuple[int, int, int]]:
    """(t, t_edit, t_boost) around both boundaries, at the ends, at random, and with touching intervals."""
    t_edit = int(torch.randint(300, 800, (1,), generator=rng))
    t_boost = int(torch.randint(50, t_edit - 100, (1,), generator=rng))
    ts = {999, 0, t_edit, t_edit - 1, t_edit + 1, t_boost, t_boost - 1, t_boost + 1,
          *torch.randint(0, 1000, (6,), generator=rng).tolist()}
    cases = [(t, t_edit, t_boost) for t in sorted(ts, reverse=True)]
    cases += [(t, t_edit, t_edit) for t in (t_edit, t_edit - 1)]  # t_boost = t_edit: no plain phase
    cases += [(t, t_edit, 0) for t in (t_edit - 1, 0)]  # t_boost = 0: no boosting
    return cases


def _answers(fn, cases) -> list:
    return [call(fn, t, te, tb, name="your phase_of") for t, te, tb in cases]


_MISTAKES = [
    (lambda t, te, tb: "edit" if t > te else ("plain" if t >= tb else "boost"),
     "t = t_edit is still an edit step: the edit phase is T ≥ t ≥ t_edit (t ≥ t_edit, not t > t_edit)"),
    (lambda t, te, tb: "edit" if t >= te else ("plain" if t > tb else "boost"),
     "t = t_boost is still a plain DDIM step: boosting is t < t_boost (not t ≤ t_boost)"),
    (lambda t, te, tb: "edit" if t > te else ("plain" if t > tb else "boost"),
     "both boundaries are on the wrong side: edit for t ≥ t_edit, boost for t < t_boost"),
    (lambda t, te, tb: "boost" if t >= te else ("plain" if t >= tb else "edit"),
     "the phases are swapped: the process edits first, at large t (T ≥ t ≥ t_edit), and boosts last, near 0 "
     "(t < t_boost)"),
    (lambda t, te, tb: "edit" if t < te else ("plain" if t >= tb else "boost"),
     "the edit phase is at large t, T ≥ t ≥ t_edit (the process runs from T down to 0)"),
    (lambda t, te, tb: "edit" if t >= te else ("boost" if t >= tb else "plain"),
     "plain and boost are swapped: plain DDIM for t_edit > t ≥ t_boost, boosting below t_boost"),
    (lambda t, te, tb: "edit" if t <= tb else ("plain" if t <= te else "boost"),
     "t_edit and t_boost are mixed up: edit for t ≥ t_edit (large t), boost for t < t_boost (small t)"),
]


def _check_phase_of(fn, rng):
    cases = _cases(rng)
    mine = _answers(fn, cases)
    bad = [m for m in mine if m not in PHASES]
    if bad:
        raise Wrong(f"phase_of returns one of the names 'edit', 'plain', 'boost' (as the library does); yours returned "
                    f"{bad[0]!r}")
    ref = [process.phase_of(t, te, tb) for t, te, tb in cases]
    if mine == ref:
        return
    for wrong, message in _MISTAKES:
        if mine == [wrong(*c) for c in cases]:
            raise Wrong(message)
    k = next(i for i, (a, b) in enumerate(zip(mine, ref)) if a != b)
    t, te, tb = cases[k]
    raise Wrong(f"at t = {t} with t_edit = {te} and t_boost = {tb} the phase is {ref[k]!r}, yours says {mine[k]!r}: "
                "edit for t ≥ t_edit, plain DDIM for t_edit > t ≥ t_boost, boost for t < t_boost")


def _check_eta_of(fn, rng):
    eta_boost = float(torch.empty(()).uniform_(0.3, 0.9, generator=rng))
    for phase, args, want in (("edit", (), 0.0), ("plain", (), 0.0), ("boost", (), 1.0),
                              ("edit", (eta_boost,), 0.0), ("plain", (eta_boost,), 0.0),
                              ("boost", (eta_boost,), eta_boost)):
        got = call(fn, phase, *args, name="your eta_of")
        try:
            value = float(got)
        except (TypeError, ValueError):
            raise Wrong(f"eta_of should return a number (η); for {phase!r} yours returned {got!r}") from None
        if abs(value - want) <= 1e-9:
            continue
        if phase == "boost" and value == 0.0:
            raise Wrong("quality boosting is stochastic: its η is η_boost (1 by default, as in the paper), not 0")
        if phase == "boost" and args and value == 1.0:
            raise Wrong(f"the boost phase's η is the eta_boost it is given ({eta_boost:.2f} here), 1 only by default")
        if phase == "edit":
            raise Wrong(f"the edit phase is deterministic (the asymmetric step, η = 0); yours gives η = {value:g}")
        if phase == "plain":
            raise Wrong(f"the plain phase is deterministic DDIM (η = 0); yours gives η = {value:g}")
        raise Wrong(f"for {phase!r}{' with eta_boost = ' + format(args[0], '.2f') if args else ''} η is {want:g}; "
                    f"yours gives {value:g}")


exercise("07.1", "07_intervals", "the phases of the generative process (eq. 6) and their η", [
    Part("phase_of", "asyrp_lib.core.process:phase_of", _check_phase_of, symbol="the phase",
         label="process.phase_of"),
    Part("eta_of", "asyrp_lib.course.ex07_intervals:reference_eta_of", _check_eta_of, symbol="η",
         label="η of each phase (as in process.reverse_process)"),
])
