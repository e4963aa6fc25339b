r"""The exercises in which a student writes a piece of the method, and the checks that say what is wrong with it.

In a notebook, the student writes a function from its equation, then runs::

    predicted_x0, direction_to_xt, ddim_sigma = check("01.1", predicted_x0, direction_to_xt, ddim_sigma)

:func:`check` runs each function against the library's on fresh random inputs (a new seed each time, a few
milliseconds to a few seconds, on the CPU, whatever the profile), prints what passed and, for what did not, what is
wrong in the words of the equation ("your D_t differs when σ_t > 0: look at the σ_t term"), and returns the
functions the rest of the notebook uses: the student's where it passed, the library's where it did not or is not
written yet (a starter's body is ``...``, so it returns ``None``). The committed, unsolved notebooks therefore run
on with the library and say so.

An :class:`Exercise` is one numbered exercise (``"05.1"``) of one notebook; it has one :class:`Part` per function
the student writes, each worth some points. The checks of notebook NN live in ``asyrp_lib.course.exNN_*``;
:func:`evaluate` runs them without printing (the grader and the tests use it).

Writing a check: a part's ``check(fn, rng)`` calls the student's function through :func:`call` (``None`` back:
:class:`NotWritten`; an exception: :class:`Wrong` naming it), compares with the library through :func:`same`,
and raises :class:`Wrong` with a message that names the term to look at. :func:`diagnose` picks that message by
comparing the student's output with the outputs of known mistakes.
"""
from __future__ import annotations

import importlib
import secrets
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import torch

__all__ = ["Exercise", "Part", "PartResult", "Result", "NotWritten", "Wrong", "check", "evaluate", "exercise",
           "get", "exercises", "call", "running", "same", "gap", "diagnose", "as_tensor", "submitted", "EXERCISE_MODULES"]

EXERCISE_MODULES = ("ex01_ddim", "ex02_clip", "ex03_lpips", "ex04_naive", "ex05_hspace", "ex06_train",
                    "ex07_intervals", "ex10_hspace_methods")


class NotWritten(Exception):
    """The student's function is still the starter (it returned ``None``)."""


class Wrong(Exception):
    """A check failed; the message says what is wrong, in the student's words."""


@dataclass(frozen=True)
class Part:
    """One function the student writes: its name in the notebook, the library's version (``"module:attr"``, used
    until the student's passes) and the check, ``check(fn, rng)``, which raises :class:`Wrong` or
    :class:`NotWritten`."""

    name: str
    library: str
    check: Callable[[Callable, torch.Generator], None]
    points: int = 1
    symbol: str = ""  # the paper's name of what it computes ("P_t"), for the messages
    label: str = ""  # how the messages name the library's version (default: module.attr of ``library``)
    guards: tuple[str, ...] | None = None  # library functions that raise while the student's runs (default: library)
    passed: str = ""  # what a pass means, when the check tests behaviour rather than comparing with the library

    @property
    def guarded(self) -> tuple[str, ...]:
        if self.guards is not None:
            return self.guards
        return () if self.library.startswith(__package__) else (self.library,)

    def library_object(self):
        module, attr = self.library.split(":")
        return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class Exercise:
    id: str  # "01.1": notebook 01, exercise 1
    notebook: str  # "01_ddim"
    title: str
    parts: tuple[Part, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parts)

    @property
    def points(self) -> int:
        return sum(p.points for p in self.parts)


@dataclass
class PartResult:
    name: str
    points: int
    earned: int
    status: str  # "passed", "wrong", "not written", "library" (the library's own function handed in)
    message: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@dataclass
class Result:
    exercise: Exercise
    parts: list[PartResult] = field(default_factory=list)

    @property
    def points(self) -> int:
        return sum(p.points for p in self.parts)

    @property
    def earned(self) -> int:
        return sum(p.earned for p in self.parts)

    @property
    def passed(self) -> bool:
        return all(p.passed for p in self.parts)

    def to_dict(self) -> dict:
        return {"exercise": self.exercise.id, "title": self.exercise.title, "points": self.points,
                "earned": self.earned,
                "parts": [{"name": p.name, "points": p.points, "earned": p.earned, "status": p.status,
                           "message": p.message} for p in self.parts]}

    def report(self) -> str:
        """What a student reads under the check cell."""
        ex = self.exercise
        lines = [f"Exercise {ex.id} · {ex.title}"]
        width = max(len(p.name) for p in self.parts)
        marks = {"passed": "✓", "wrong": "✗", "not written": "·", "library": "·"}
        for p in self.parts:
            lines.append(f"  {marks[p.status]} {p.name:<{width}}  {p.message}")
        fallback = [part for part, r in zip(ex.parts, self.parts) if not r.passed]
        if fallback:
            lines.append("  → until yours pass, the rest of the notebook uses the library's "
                         + ", ".join(part.label or _short(part.library) for part in fallback) + ".")
        else:
            lines.append("  → the rest of the notebook uses your function" + ("s." if len(ex.parts) > 1 else "."))
        lines.append(f"  {self.earned} of {self.points} point{'s' if self.points != 1 else ''}")
        return "\n".join(lines)


def _short(library: str) -> str:
    module, attr = library.split(":")
    return f"{module.rsplit('.', 1)[-1]}.{attr}"


# --------------------------------------------------------------------------------------------
# The registry
# --------------------------------------------------------------------------------------------
_REGISTRY: dict[str, Exercise] = {}
_LOADED = False
_SUBMITTED: dict[str, dict[str, Callable]] = {}


def exercise(id: str, notebook: str, title: str, parts: Sequence[Part]) -> Exercise:
    """Register an exercise (called by the ``exNN_*`` modules at import)."""
    if id in _REGISTRY:
        raise ValueError(f"exercise {id} is registered twice")
    if not notebook.startswith(id.split(".")[0] + "_"):
        raise ValueError(f"exercise {id}: its notebook {notebook!r} should start with {id.split('.')[0]}_")
    ex = Exercise(id=id, notebook=notebook, title=title, parts=tuple(parts))
    _REGISTRY[id] = ex
    return ex


def _load() -> None:
    global _LOADED
    if not _LOADED:
        for name in EXERCISE_MODULES:
            importlib.import_module(f"{__package__}.{name}")
        _LOADED = True


def get(exercise_id: str) -> Exercise:
    """The exercise ``"NN.k"``; a ``KeyError`` listing the known ones otherwise."""
    _load()
    try:
        return _REGISTRY[str(exercise_id)]
    except KeyError:
        raise KeyError(f"no exercise {exercise_id!r}; the course has {', '.join(sorted(_REGISTRY))}") from None


def exercises(notebook: str | None = None) -> list[Exercise]:
    """Every exercise, or those of one notebook (``"05_h_space"`` or ``"05"``), in order."""
    _load()
    found = sorted(_REGISTRY.values(), key=lambda e: tuple(int(s) for s in e.id.split(".")))
    if notebook is None:
        return found
    key = str(notebook).split("_")[0]
    return [e for e in found if e.id.split(".")[0] == key]


def submitted(exercise_id: str) -> dict[str, Callable] | None:
    """The functions last handed to :func:`check` for this exercise in this kernel (the grader reads them)."""
    return _SUBMITTED.get(str(exercise_id))


# --------------------------------------------------------------------------------------------
# Running the checks
# --------------------------------------------------------------------------------------------
def _seed(seed: int | None) -> int:
    return secrets.randbits(31) if seed is None else int(seed)


@contextmanager
def _library_guarded(parts: Sequence[Part]) -> Iterator[None]:
    """While a student's function is checked, the library's version of it raises when called from outside the
    library: a function that only calls the library's does not pass."""
    saved = []
    for part in parts:
        for target in part.guarded:
            module, attr = target.split(":")
            mod = importlib.import_module(module)
            original = getattr(mod, attr)

            def guard(*args, _name=part.name, _lib=_short(target), _original=original, **kwargs):
                caller = sys._getframe(1).f_globals.get("__name__", "")
                if caller.split(".")[0] == "asyrp_lib":  # the check's own reference computation
                    return _original(*args, **kwargs)
                raise Wrong(f"your {_name} calls the library's {_lib}: write it from the equation")

            saved.append((mod, attr, original))
            setattr(mod, attr, guard)
    try:
        yield
    finally:
        for mod, attr, original in saved:
            setattr(mod, attr, original)


def evaluate(exercise_id: str, functions: Sequence[Callable] | dict, *, seed: int | None = None) -> Result:
    """Check the student's functions of one exercise (in the order of its parts, or by name) without printing."""
    ex = get(exercise_id)
    if isinstance(functions, dict):
        funcs = [functions.get(name) for name in ex.names]
    else:
        funcs = list(functions)
        if len(funcs) != len(ex.parts):
            raise TypeError(f"exercise {ex.id} takes {len(ex.parts)} function{'s' if len(ex.parts) > 1 else ''} "
                            f"({', '.join(ex.names)}), got {len(funcs)}")
    result = Result(ex)
    base = _seed(seed)
    for k, (part, fn) in enumerate(zip(ex.parts, funcs)):
        result.parts.append(_run_part(part, fn, base + 7919 * k))
    return result


def _run_part(part: Part, fn, seed: int) -> PartResult:
    what = part.symbol or part.name
    if fn is None:
        return PartResult(part.name, part.points, 0, "not written", f"no {part.name} defined yet")
    if fn is part.library_object():
        return PartResult(part.name, part.points, 0, "library",
                          f"this is the library's {_short(part.library)}: write your own from the equation")
    rng = torch.Generator().manual_seed(seed)
    try:
        with _library_guarded([part]), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            part.check(fn, rng)
    except NotWritten:
        return PartResult(part.name, part.points, 0, "not written",
                          "not written yet (the starter's body is still `...`)")
    except Wrong as exc:
        return PartResult(part.name, part.points, 0, "wrong", str(exc))
    except Exception as exc:  # a bug in the student's code that escaped call(): say where
        return PartResult(part.name, part.points, 0, "wrong", f"checking your {what} raised {_exc(exc)}")
    return PartResult(part.name, part.points, part.points, "passed",
                      part.passed or f"right: {what} agrees with the library on fresh random inputs")


def check(exercise_id: str, *functions: Callable, seed: int | None = None, quiet: bool = False):
    """Check the student's functions of one exercise, print the report, and return the functions the notebook
    goes on with: each of the student's that passed, else the library's (one function, or a tuple)."""
    ex = get(exercise_id)
    result = evaluate(exercise_id, functions, seed=seed)
    _SUBMITTED[ex.id] = dict(zip(ex.names, functions))
    if not quiet:
        print(result.report())
    use = [fn if r.passed else part.library_object() for part, fn, r in zip(ex.parts, functions, result.parts)]
    return use[0] if len(use) == 1 else tuple(use)


# --------------------------------------------------------------------------------------------
# Helpers for writing checks
# --------------------------------------------------------------------------------------------
def _exc(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}" + (f": {text[0][:160]}" if text else "")


@contextmanager
def running(name: str) -> Iterator[None]:
    """Around a student's code: ``NotImplementedError`` is :class:`NotWritten`, any other exception is
    :class:`Wrong` saying that ``name`` raised it."""
    try:
        yield
    except (Wrong, NotWritten):
        raise
    except NotImplementedError:
        raise NotWritten() from None
    except Exception as exc:
        raise Wrong(f"{name} raised {_exc(exc)}") from None


def call(fn: Callable, *args, name: str = "your function", **kwargs):
    """``fn(*args, **kwargs)``; ``None`` back is :class:`NotWritten`, an exception is :class:`Wrong` naming it."""
    with running(name):
        out = fn(*args, **kwargs)
    if out is None:
        raise NotWritten()
    return out


def as_tensor(value, like: torch.Tensor, what: str) -> torch.Tensor:
    """``value`` as a float tensor of ``like``'s shape, or :class:`Wrong` saying what came back instead."""
    if not isinstance(value, torch.Tensor):
        try:
            value = torch.as_tensor(value, dtype=like.dtype)
        except Exception:
            raise Wrong(f"{what} should be a tensor of shape {tuple(like.shape)}; got a {type(value).__name__}") from None
    if value.shape != like.shape:
        try:
            value = value.expand_as(like) if value.numel() == 1 or value.dim() < like.dim() else value
        except RuntimeError:
            pass
        if value.shape != like.shape:
            raise Wrong(f"{what} has shape {tuple(value.shape)}; expected {tuple(like.shape)}")
    if not torch.isfinite(value).all():
        raise Wrong(f"{what} contains NaN or infinite values")
    return value.to(like.dtype)


def same(mine: torch.Tensor, ref: torch.Tensor, *, atol: float = 1e-5, rtol: float = 1e-4) -> bool:
    """Whether two tensors agree to the tolerance (shapes broadcast)."""
    try:
        return bool(torch.allclose(mine.double(), ref.double(), atol=atol, rtol=rtol))
    except RuntimeError:
        return False


def gap(mine: torch.Tensor, ref: torch.Tensor) -> float:
    """The largest absolute difference (for the messages)."""
    return float((mine.double() - ref.double()).abs().max())


def diagnose(mine: torch.Tensor, mistakes: Sequence[tuple[torch.Tensor, str]], fallback: str, *,
             atol: float = 1e-5, rtol: float = 1e-4) -> str:
    """The message of the first known mistake whose output ``mine`` equals, else ``fallback``."""
    for value, message in mistakes:
        if same(mine, value, atol=atol, rtol=rtol):
            return message
    return fallback
