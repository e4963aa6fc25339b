r"""The generative process of Asyrp (course eq. 6) and its asymmetric step (eq. 4–5), written out once.

This module is the one place where eq. 4–6 are written out; every other docstring points here.

For a descending DDIM schedule T > … > 0, each step t → t_prev is in one of three phases (:func:`phase_of`):

    editing   T ≥ t ≥ t_edit         x_{t-1} = sqrt(ᾱ_{t-1}) P_t(ε̃) + D_t(ε)          η = 0     eq. (4)
    plain     t_edit > t ≥ t_boost   x_{t-1} = sqrt(ᾱ_{t-1}) P_t(ε) + D_t(ε)           η = 0     eq. (1)
    boosting  t < t_boost            x_{t-1} = sqrt(ᾱ_{t-1}) P_t(ε) + D_t(ε) + σ_t z   η = η_boost (1: quality boosting)

with ε = ε^θ(x_t) and ε̃ = ε^θ(x_t | h_t + Δh_t) the U-Net's noise with its bottleneck h_t shifted (eq. 5; the
skip connections keep the unshifted features). The asymmetry of eq. 4 is that only P_t sees the edit: D_t keeps ε.
With ``asymmetric=False`` the edited ε feeds D_t too (the symmetric step, whose changes in P_t and D_t nearly
cancel). The numbered steps of :func:`reverse_process` and :func:`asymmetric_step` below follow these equations.

What "ε̃" is comes from an *edit* (:class:`DeltaH`: a Δh in the U-Net's bottleneck — one tensor for all
steps, one per step, f_t, or Δh_t = Σ c_i f_t^i(h_t) over several directions; :class:`EpsShift`: a Δε added to
the noise prediction, the naive edit of notebook 04). An edit is any callable ``edit(hs, x_t, t, i, n) → (ε̃, ε)``
that returns ε̃ for the first ``n`` rows of ``x_t`` and ε for all rows, with ``i`` the step's index.

:func:`reverse_process` yields every step (:class:`ProcessStep`) so that callers can read P_t previews or, with
``grad=True``, take an optimiser step on the edit's parameters before the latent moves on (training always
moves along the detached edited trajectory, as the reference implementation does). It is made of two
functions that training loops also call directly: :func:`compute_step` (the U-Net at x_t) and
:func:`advance` (x_t → x_{t-1}). With ``reconstruct=True``
the unedited process runs in the same batch (the same boosting noise): its rows are the *reconstruction*, and
its P_t is the L1 target of training (:mod:`asyrp_lib.core.loss`). :func:`run_process` returns only the end points.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Callable, Iterator, Sequence

import torch

from . import ddim
from .._utils import add_shift, check_timestep, progress_bar
from .hspace import HSpaceUNet

__all__ = ["PHASES", "phase_of", "check_intervals", "ProcessStep", "combine_delta_h", "DeltaH", "EpsShift",
           "compute_step",
           "asymmetric_step", "advance", "Phases", "RunOptions", "reverse_process", "run_process"]

PHASES = ("edit", "plain", "boost")


def phase_of(t: int, t_edit: int | None, t_boost: int | None) -> str:
    """``"edit"`` for t ≥ t_edit, ``"boost"`` for t < t_boost, else ``"plain"`` (``None``: no such phase)."""
    if t_edit is not None and t >= t_edit:
        return "edit"
    if t_boost is not None and t < t_boost:
        return "boost"
    return "plain"


def check_intervals(t_edit, t_boost, timesteps: Sequence[int], num_train_timesteps: int) -> tuple[int, int]:
    """Validate (t_edit, t_boost) for a DDIM schedule: both in [0, T-1], t_boost ≤ t_edit, and t_edit at or
    below the first step (otherwise no step would edit)."""
    t_edit = check_timestep(t_edit, "t_edit", num_train_timesteps)
    t_boost = check_timestep(t_boost, "t_boost", num_train_timesteps)
    if t_boost > t_edit:
        raise ValueError(f"t_boost: expected t_boost ≤ t_edit (boosting happens after editing), got "
                         f"t_boost={t_boost} > t_edit={t_edit}")
    if t_edit > max(timesteps):
        raise ValueError(f"t_edit: {t_edit} is above the first DDIM step ({max(timesteps)} with {len(timesteps)} "
                         f"steps), so nothing would be edited; use a smaller t_edit or more steps")
    return t_edit, t_boost


# --------------------------------------------------------------------------------------------
# Edits
# --------------------------------------------------------------------------------------------
def combine_delta_h(h: torch.Tensor, t, directions: Sequence[tuple[Callable, float]]) -> torch.Tensor:
    """Δh_t = Σ_i c_i f_t^i(h_t): the linear combination of the directions' edits (zero with no directions)."""
    delta = torch.zeros_like(h)
    for f, c in directions:
        if c != 0:
            delta = delta + c * f(h, t)
    return delta


class DeltaH:
    """Δh in the bottleneck, from a tensor of h's shape (the same for every step), a stack of K tensors (one
    per edit step, indexed by the step's index), a callable ``f(h, t) -> Δh`` (f_t), or a list of
    ``(f, c)`` pairs summed as Δh_t = Σ c_i f_i(h_t, t) (the one place directions are combined); scaled by
    ``strength``."""

    def __init__(self, source, strength: float = 1.0):
        self.source, self.strength = source, float(strength)

    def delta(self, h: torch.Tensor, t, i: int) -> torch.Tensor:
        src = self.source
        if isinstance(src, torch.Tensor):
            d = src[i if src.dim() == 4 and src.shape[0] > 1 else 0] if src.dim() == 4 else src
            return self.strength * d.unsqueeze(0)
        if isinstance(src, (list, tuple)):
            return self.strength * combine_delta_h(h, t, src)
        return self.strength * src(h, t)

    def __call__(self, hs: HSpaceUNet, x: torch.Tensor, t: int, i: int, n: int):
        return hs.eps(x, t, lambda h, tt: self.delta(h, tt, i), edit_rows=n)


class EpsShift:
    """ε̃ = ε + strength · Δε for the edited rows, the naive edit of notebook 04 (the one Δε edit of the library).

    ``delta_eps``: one image's shape (3, S, S) or (1, 3, S, S), the same at every step, or a stack (K, 3, S, S),
    one per edit step (step i takes entry min(i, K − 1)). It may carry a graph (optimising Δε)."""

    def __init__(self, delta_eps: torch.Tensor, strength: float = 1.0):
        if not isinstance(delta_eps, torch.Tensor) or delta_eps.dim() not in (3, 4):
            raise ValueError(f"delta_eps: expected a tensor (3, S, S) or (K, 3, S, S), got "
                             f"{tuple(getattr(delta_eps, 'shape', ())) or type(delta_eps).__name__}")
        self.delta_eps, self.strength = delta_eps, float(strength)

    def at(self, i: int) -> torch.Tensor:
        """strength · Δε at edit step ``i``."""
        d = self.delta_eps
        return self.strength * (d if d.dim() == 3 else d[min(i, d.shape[0] - 1)])

    def __call__(self, hs: HSpaceUNet, x: torch.Tensor, t: int, i: int, n: int):
        with torch.no_grad():
            eps = hs.eps(x, t)
        return add_shift(eps[:n], self.at(i), "delta_eps"), eps


# --------------------------------------------------------------------------------------------
# The process
# --------------------------------------------------------------------------------------------
@dataclass
class ProcessStep:
    """One step t → t_prev. Rows: the ``n`` edited ones, then (with ``reconstruct``) the unedited ones."""

    index: int  # position in the schedule
    t: int
    t_prev: int
    phase: str  # "edit", "plain" or "boost"
    n: int  # number of edited rows
    x_t: torch.Tensor  # every row at t (detached)
    eps: torch.Tensor  # ε(x_t) of every row (detached)
    eps_edit: torch.Tensor | None  # ε_edit of the edited rows in the edit phase (carries a graph with grad=True)
    alpha_t: torch.Tensor  # ᾱ_t
    alpha_prev: torch.Tensor  # ᾱ_{t_prev}
    clip_sample: bool = False

    def _p(self, x, eps) -> torch.Tensor:
        p = ddim.predicted_x0(x, eps, self.alpha_t.to(x.device))
        return p.clamp(-1, 1) if self.clip_sample else p

    @property
    def pred_x0(self) -> torch.Tensor:
        """P_t of the edited rows: P_t(ε_edit) in the edit phase (P_t^edit), else P_t(ε)."""
        return self._p(self.x_t[:self.n], self.eps_edit if self.eps_edit is not None else self.eps[:self.n])

    @property
    def pred_x0_plain(self) -> torch.Tensor:
        """P_t(ε(x_t)) at the edited rows' own x_t, without the edit."""
        return self._p(self.x_t[:self.n], self.eps[:self.n])

    @property
    def pred_x0_unedited(self) -> torch.Tensor:
        """P_t on the unedited trajectory (the reconstruction rows) at the same t."""
        if self.x_t.shape[0] != 2 * self.n:
            raise ValueError("pred_x0_unedited: run the process with reconstruct=True")
        return self._p(self.x_t[self.n:], self.eps[self.n:])


def _boost_noise(n: int, like: torch.Tensor, generator, rows: int) -> torch.Tensor:
    z = torch.randn((n, *like.shape[1:]), generator=generator, dtype=like.dtype,
                    device=generator.device if generator is not None else "cpu").to(like.device)
    return z.repeat(rows // n, 1, 1, 1)  # the same noise for the edited and the reconstruction rows


_STEP_OPTIONS = frozenset({"n", "edit", "grad", "clip_sample", "same_rows"})


def compute_step(hs: HSpaceUNet, x: torch.Tensor, t: int, t_prev: int, index: int, schedule: ddim.Schedule, *,
                 phase: str, **options) -> ProcessStep:
    """ε (and, in the edit phase, ε_edit of the first ``n`` rows) at ``x`` = x_t: one step before it moves on.

    ``options``, by name: ``n`` (the edited rows, the first ones; default every row), ``edit`` (the edit of the
    edit phase, called as ``edit(hs, x, t, index, n)``), ``grad`` (build the graph of ε_edit), ``clip_sample``
    (clamp P_t to [-1, 1]), ``same_rows`` (the caller knows that ``x`` is two copies of its first ``n`` rows: the
    edited rows and the reconstruction at the first step, both x_T; the U-Net then runs on one copy and ε is
    shared)."""
    unknown = sorted(set(options) - _STEP_OPTIONS)
    if unknown:
        raise TypeError(f"compute_step() got unexpected keyword argument(s) {', '.join(unknown)}")
    n = x.shape[0] if options.get("n") is None else options["n"]
    edit, grad = options.get("edit"), options.get("grad", False)
    clip_sample, same_rows = options.get("clip_sample", False), options.get("same_rows", False)
    x = x.detach()
    same_rows = same_rows and x.shape[0] == 2 * n
    xs = x[:n] if same_rows else x
    with torch.set_grad_enabled(grad and phase == "edit"):
        eps_edit, eps = edit(hs, xs, t, index, n) if phase == "edit" else (None, hs.eps(xs, t))
    if same_rows:
        eps = torch.cat([eps, eps])
    return ProcessStep(index=index, t=t, t_prev=t_prev, phase=phase, n=n, x_t=x, eps=eps.detach(),
                       eps_edit=eps_edit, alpha_t=schedule.alpha(t), alpha_prev=schedule.alpha(t_prev),
                       clip_sample=clip_sample)


def asymmetric_step(x_t: torch.Tensor, eps_edit: torch.Tensor, eps: torch.Tensor, alpha_t, alpha_prev, *,
                    clip_sample: bool = False) -> torch.Tensor:
    """Eq. (4): x_{t-1} = sqrt(ᾱ_{t-1}) P_t(ε̃) + D_t(ε), η = 0 — the edit reaches P_t only.

    ``eps_edit``: ε̃ = ε^θ(x_t | h_t + Δh_t) (eq. 5); ``eps``: the unedited ε^θ(x_t) (give ε̃ again for the
    symmetric step); ``alpha_t``, ``alpha_prev``: ᾱ_t, ᾱ_{t-1}; ``clip_sample``: clamp P_t to [-1, 1]."""
    a_t = torch.as_tensor(alpha_t, dtype=x_t.dtype, device=x_t.device)
    a_prev = torch.as_tensor(alpha_prev, dtype=x_t.dtype, device=x_t.device)
    # 1. P_t(ε̃) = (x_t − sqrt(1 − ᾱ_t) ε̃) / sqrt(ᾱ_t): the predicted x_0 carries the edit (eq. 2 with ε̃)
    p_t = ddim.predicted_x0(x_t, eps_edit, a_t)
    # 2. optionally clamp P_t to the image range
    if clip_sample:
        p_t = p_t.clamp(-1.0, 1.0)
    # 3. D_t(ε) = sqrt(1 − ᾱ_{t-1}) ε: the direction to x_t from the *unedited* ε (eq. 2, σ_t = 0): the asymmetry
    d_t = ddim.direction_to_xt(eps, a_prev)
    # 4. x_{t-1} = sqrt(ᾱ_{t-1}) P_t(ε̃) + D_t(ε)   (eq. 4)
    return a_prev.sqrt() * p_t + d_t


@torch.no_grad()
def advance(step: ProcessStep, *, asymmetric: bool = True, eta: float = 0.0, generator=None,
            follow_edit: bool = True) -> torch.Tensor:
    """Step 3 of :func:`reverse_process`: x_{t-1} of every row by the step's phase. Editing: the edited rows by
    :func:`asymmetric_step` (or the symmetric step; or, with ``follow_edit=False``, plain DDIM: the unedited
    trajectory), the reconstruction rows by plain DDIM. Plain and boosting: DDIM with η = ``eta`` (> 0 only
    outside the editing phase), the same noise for the edited and the reconstruction rows."""
    x, n, a_t, a_prev, clip = step.x_t, step.n, step.alpha_t, step.alpha_prev, step.clip_sample
    if step.phase == "edit":
        eps_edit = step.eps_edit.detach() if follow_edit else step.eps[:n]
        edited = asymmetric_step(x[:n], eps_edit, step.eps[:n] if asymmetric else eps_edit, a_t, a_prev,
                                 clip_sample=clip)
        if x.shape[0] == n:
            return edited
        return torch.cat([edited, ddim.ddim_step(x[n:], step.eps[n:], a_t, a_prev, clip_sample=clip).x_prev])
    noise = _boost_noise(n, x, generator, x.shape[0]) if eta > 0 else None
    return ddim.ddim_step(x, step.eps, a_t, a_prev, eta=eta, noise=noise, clip_sample=clip).x_prev


@dataclass(frozen=True)
class Phases:
    """Eq. 6's phases for one run: editing for t ≥ ``t_edit`` (``None``: no editing phase) by the asymmetric step
    (``asymmetric=False``: the symmetric one), plain DDIM, then quality boosting with η = ``eta_boost`` for
    t < ``t_boost`` (``None``: no boosting)."""

    t_edit: int | None = None
    t_boost: int | None = None
    eta_boost: float = 1.0
    asymmetric: bool = True


@dataclass(frozen=True)
class RunOptions:
    """How :func:`reverse_process` runs, beside the phases. ``reconstruct``: also run the unedited process in the
    same batch, from ``x_unedited`` (default ``x_T``). ``start``: begin at this index of the schedule (``x_T`` is
    then the latent at that step: resuming). ``grad``: build the graph of ε̃ (to take an optimiser step while the
    step is yielded). ``until_edit_done``: stop after the edit phase. ``clip_sample``: clamp P_t to [-1, 1] at
    every step. ``generator``: the boosting noise (the reconstruction rows get the same). ``progress``, ``desc``:
    the progress bar."""

    reconstruct: bool = False
    x_unedited: torch.Tensor | None = None
    start: int = 0
    grad: bool = False
    until_edit_done: bool = False
    clip_sample: bool = False
    generator: torch.Generator | None = None
    progress: bool = False
    desc: str = "Asyrp process"


_PHASE_FIELDS = frozenset(f.name for f in fields(Phases))
_RUN_FIELDS = frozenset(f.name for f in fields(RunOptions))


def _grouped(phases: Phases | None, run: RunOptions | None, keywords: dict) -> tuple[Phases, RunOptions]:
    """``phases`` and ``run`` with the fields given one by one as keywords (``t_edit=…``, ``reconstruct=…``)."""
    unknown = sorted(set(keywords) - _PHASE_FIELDS - _RUN_FIELDS)
    if unknown:
        raise TypeError(f"reverse_process() got unexpected keyword argument(s) {', '.join(unknown)}; the fields of "
                        f"Phases and RunOptions may be given by name")
    return (replace(phases or Phases(), **{k: v for k, v in keywords.items() if k in _PHASE_FIELDS}),
            replace(run or RunOptions(), **{k: v for k, v in keywords.items() if k in _RUN_FIELDS}))


def reverse_process(hs: HSpaceUNet, x_T: torch.Tensor, timesteps: Sequence[int], schedule: ddim.Schedule, *,
                    edit: Callable | None = None, phases: Phases | None = None, run: RunOptions | None = None,
                    **keywords) -> Iterator[ProcessStep]:
    """Run eq. (6) from ``x_T`` and yield each :class:`ProcessStep` before the latent moves on, then a last
    step of phase ``"done"`` whose ``x_t`` holds x_0 (every row).

    ``edit``: the edit of the edit phase (no edit: ``None``; then there is no edit phase). ``phases``: when each
    phase acts (:class:`Phases`); ``run``: the rest (:class:`RunOptions`: the reconstruction, the boosting noise, …).
    Any field of either may also be given by name (``t_edit=300, reconstruct=True``): it replaces that field.
    """
    phases, run = _grouped(phases, run, keywords)
    t_edit, t_boost, eta_boost, asymmetric = phases.t_edit, phases.t_boost, phases.eta_boost, phases.asymmetric
    reconstruct, x_unedited, start, grad = run.reconstruct, run.x_unedited, run.start, run.grad
    until_edit_done, clip_sample, generator = run.until_edit_done, run.clip_sample, run.generator
    ts = ddim.check_timesteps(timesteps, schedule)
    if edit is None:
        t_edit = None
    elif t_edit is None:
        raise ValueError("t_edit: an edit needs the timestep where it stops (t_edit)")
    if not 0.0 <= float(eta_boost) <= 1.0:
        raise ValueError(f"eta_boost: expected a value in [0, 1], got {eta_boost}")
    n = x_T.shape[0]
    x = torch.cat([x_T, x_T if x_unedited is None else x_unedited]) if reconstruct else x_T
    steps = list(zip(ts, ddim.previous_timesteps(ts)))
    for i in progress_bar(range(start, len(steps)), enabled=run.progress, desc=run.desc):
        t, t_prev = steps[i]
        # 1. the phase of step t (eq. 6): editing for t ≥ t_edit, plain DDIM, quality boosting for t < t_boost
        phase = phase_of(t, t_edit, t_boost)
        if until_edit_done and phase != "edit":
            return
        # 2. ε of every row and, while editing, ε̃ of the edited rows, from one encoder pass (eq. 5)
        step = compute_step(hs, x, t, t_prev, i, schedule, phase=phase, n=n, edit=edit, grad=grad,
                            clip_sample=clip_sample, same_rows=reconstruct and x_unedited is None and i == 0)
        yield step
        # 3. x_t → x_{t-1}: the asymmetric step while editing (eq. 4), DDIM with η = 0 (plain) or η_boost (boosting)
        x = advance(step, asymmetric=asymmetric, eta=float(eta_boost) if phase == "boost" else 0.0,
                    generator=generator)
    yield ProcessStep(index=len(steps), t=-1, t_prev=-1, phase="done", n=n, x_t=x, eps=torch.empty(0),
                      eps_edit=None, alpha_t=torch.tensor(1.0), alpha_prev=torch.tensor(1.0), clip_sample=clip_sample)


@torch.no_grad()
def run_process(hs: HSpaceUNet, x_T: torch.Tensor, timesteps: Sequence[int], schedule: ddim.Schedule, *,
                keep_previews: bool = False, **kw) -> tuple[torch.Tensor, torch.Tensor | None, list]:
    """:func:`reverse_process` to the end: (x_0 of the edited rows, x_0 of the reconstruction or ``None``,
    [(t, P_t of the edited rows) at each edit step] if ``keep_previews``). Not clamped."""
    previews = []
    last = None
    for step in reverse_process(hs, x_T, timesteps, schedule, **kw):
        if step.phase == "edit" and keep_previews:
            previews.append((step.t, step.pred_x0.detach().cpu()))
        last = step
    n = x_T.shape[0]
    x = last.x_t
    return x[:n], (x[n:] if x.shape[0] > n else None), previews
