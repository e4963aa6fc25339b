r"""The generative process of Asyrp (course eq. 6): one implementation for every edit in the library.

For a descending DDIM schedule T > … > 0, each step t → t_prev is in one of three phases:

    edit   t ≥ t_edit            x_{t-1} = sqrt(ᾱ_{t-1}) P_t(ε_edit) + D_t(ε)        η = 0, eq. (4)/(5)
    plain  t_boost ≤ t < t_edit  x_{t-1} = sqrt(ᾱ_{t-1}) P_t(ε)      + D_t(ε)        η = 0
    boost  t < t_boost           x_{t-1} = sqrt(ᾱ_{t-1}) P_t(ε)      + D_t(ε) + σ_t z,  η = η_boost (1: quality boosting)

(DESIGN §5: edit on [T, t_edit], plain on (t_edit, t_boost], boost on (t_boost, 0].) With ``asymmetric=False``
the edited ε feeds D_t too (the symmetric step, whose changes in P_t and D_t nearly cancel).

What "ε_edit" is comes from an *edit* (:class:`DeltaH`: a Δh in the U-Net's bottleneck — one tensor for all
steps, one per step, f_t, or a weighted sum of directions; :class:`EpsShift`: a Δε added to the noise
prediction, the naive edit of notebook 04). An edit is any callable ``edit(hs, x_t, t, i, n) → (ε_edit, ε)``
that returns ε_edit for the first ``n`` rows of ``x_t`` and ε for all rows, with ``i`` the step's index.

:func:`reverse_process` yields every step (:class:`ProcessStep`) so that callers can read P_t previews or, with
``grad=True``, take an optimiser step on the edit's parameters before the latent moves on (training always
moves along the detached edited trajectory, as the reference implementation does). It is made of two
functions that training loops also call directly: :func:`compute_step` (the U-Net at x_t) and
:func:`advance` (x_t → x_{t-1}). With ``reconstruct=True``
the unedited process runs in the same batch (the same boosting noise): its rows are the *reconstruction*, and
its P_t is the L1 target of training (:mod:`asyrp_lib.loss`). :func:`run_process` returns only the end points.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch

from . import ddim
from ._utils import add_shift, check_timestep, progress_bar
from .hspace import HSpaceUNet

__all__ = ["PHASES", "phase_of", "check_intervals", "ProcessStep", "DeltaH", "EpsShift", "compute_step", "advance",
           "reverse_process", "run_process"]

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
class DeltaH:
    """Δh in the bottleneck, from a tensor of h's shape (the same for every step), a stack of K tensors (one
    per edit step, indexed by the step's index), a callable ``f(h, t) -> Δh`` (f_t), or a list of
    ``(f, c)`` pairs summed as Δh_t = Σ c_i f_i(h_t, t) (DESIGN §5); scaled by ``strength``."""

    def __init__(self, source, strength: float = 1.0):
        self.source, self.strength = source, float(strength)

    def delta(self, h: torch.Tensor, t, i: int) -> torch.Tensor:
        src = self.source
        if isinstance(src, torch.Tensor):
            d = src[i if src.dim() == 4 and src.shape[0] > 1 else 0] if src.dim() == 4 else src
            return self.strength * d.unsqueeze(0)
        if isinstance(src, (list, tuple)):
            total = torch.zeros_like(h)
            for f, c in src:
                if c != 0:
                    total = total + c * f(h, t)
            return self.strength * total
        return self.strength * src(h, t)

    def __call__(self, hs: HSpaceUNet, x: torch.Tensor, t: int, i: int, n: int):
        return hs.eps(x, t, lambda h, tt: self.delta(h, tt, i), edit_rows=n)


class EpsShift:
    """ε + strength · Δε for the edited rows (``delta_eps``: one image's shape, the same at every step)."""

    def __init__(self, delta_eps: torch.Tensor, strength: float = 1.0):
        self.delta_eps, self.strength = delta_eps, float(strength)

    def __call__(self, hs: HSpaceUNet, x: torch.Tensor, t: int, i: int, n: int):
        with torch.no_grad():
            eps = hs.eps(x, t)
        return add_shift(eps[:n], self.strength * self.delta_eps, "delta_eps"), eps


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


def compute_step(hs: HSpaceUNet, x: torch.Tensor, t: int, t_prev: int, index: int, schedule: ddim.Schedule, *,
                 phase: str, n: int, edit: Callable | None = None, grad: bool = False,
                 clip_sample: bool = False, same_rows: bool = False) -> ProcessStep:
    """ε (and, in the edit phase, ε_edit of the first ``n`` rows) at ``x`` = x_t: one step before it moves on.

    ``same_rows``: the caller knows that ``x`` is two copies of its first ``n`` rows (the edited rows and the
    reconstruction at the first step, both x_T); the U-Net then runs on one copy and ε is shared."""
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


@torch.no_grad()
def advance(step: ProcessStep, *, asymmetric: bool = True, eta: float = 0.0, generator=None,
            follow_edit: bool = True) -> torch.Tensor:
    """x_{t-1} of every row: the edited rows by eq. (4) (or the symmetric step; or, with ``follow_edit=False``,
    plain DDIM: the unedited trajectory), the reconstruction rows by plain DDIM; η > 0 only outside the edit phase."""
    x, n, a_t, a_prev, clip = step.x_t, step.n, step.alpha_t, step.alpha_prev, step.clip_sample
    if step.phase == "edit":
        eps_edit = step.eps_edit.detach() if follow_edit else step.eps[:n]
        edited = ddim.ddim_step(x[:n], eps_edit, a_t, a_prev, clip_sample=clip,
                                eps_direction=step.eps[:n] if asymmetric else None).x_prev
        if x.shape[0] == n:
            return edited
        return torch.cat([edited, ddim.ddim_step(x[n:], step.eps[n:], a_t, a_prev, clip_sample=clip).x_prev])
    noise = _boost_noise(n, x, generator, x.shape[0]) if eta > 0 else None
    return ddim.ddim_step(x, step.eps, a_t, a_prev, eta=eta, noise=noise, clip_sample=clip).x_prev


def reverse_process(hs: HSpaceUNet, x_T: torch.Tensor, timesteps: Sequence[int], schedule: ddim.Schedule, *,
                    edit: Callable | None = None, t_edit: int | None = None, t_boost: int | None = None,
                    asymmetric: bool = True, eta_boost: float = 1.0, generator: torch.Generator | None = None,
                    reconstruct: bool = False, x_unedited: torch.Tensor | None = None, start: int = 0,
                    grad: bool = False, until_edit_done: bool = False, clip_sample: bool = False,
                    progress: bool = False, desc: str = "Asyrp process") -> Iterator[ProcessStep]:
    """Run eq. (6) from ``x_T`` and yield each :class:`ProcessStep` before the latent moves on, then a last
    step of phase ``"done"`` whose ``x_t`` holds x_0 (every row).

    ``edit``: the edit of the edit phase (no edit: ``None``; then there is no edit phase). ``t_boost``: boosting
    below it (``None``: none). ``reconstruct``: also run the unedited process in the same batch, from
    ``x_unedited`` (default ``x_T``). ``start``: begin at this index of the schedule (``x_T`` is then the latent
    at that step: resuming). ``grad``: build the graph of ε_edit (to take an optimiser step while the step is
    yielded). ``until_edit_done``: stop after the edit phase. ``clip_sample``: clamp P_t to [-1, 1] at every step.
    """
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
    for i in progress_bar(range(start, len(steps)), enabled=progress, desc=desc):
        t, t_prev = steps[i]
        phase = phase_of(t, t_edit, t_boost)
        if until_edit_done and phase != "edit":
            return
        step = compute_step(hs, x, t, t_prev, i, schedule, phase=phase, n=n, edit=edit, grad=grad,
                            clip_sample=clip_sample, same_rows=reconstruct and x_unedited is None and i == 0)
        yield step
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
