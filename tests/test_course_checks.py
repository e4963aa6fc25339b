"""Every exercise check (asyrp_lib.course): the solutions pass, on several fresh seeds; every planted wrong answer
(``tests/course_mistakes/*.py``, at least two per exercise) fails, with the message that names the mistake; a
function left as the starter is "not written" and the notebook goes on with the library's."""
from __future__ import annotations

import importlib
import pkgutil

import pytest
import torch

from asyrp_lib.course import checks
import course_mistakes
from _course import define, solution_namespace

MISTAKES = [m for info in pkgutil.iter_modules(course_mistakes.__path__)
            for m in importlib.import_module(f"course_mistakes.{info.name}").MISTAKES]
EXERCISES = checks.exercises()


def _namespace(ex):
    return solution_namespace(ex.notebook, [n for e in checks.exercises(ex.notebook) for n in e.names])


def test_the_course_has_exercises_in_notebooks_01_to_07():
    assert {e.notebook.split("_")[0] for e in EXERCISES} >= {f"{k:02d}" for k in range(1, 8)}


@pytest.mark.parametrize("ex", EXERCISES, ids=lambda e: e.id)
def test_the_solution_passes(ex):
    ns = _namespace(ex)
    for seed in (None, None, 12345):
        result = checks.evaluate(ex.id, ns, seed=seed)
        assert result.passed, result.report()
        assert result.earned == ex.points > 0


@pytest.mark.parametrize("ex", EXERCISES, ids=lambda e: e.id)
def test_every_exercise_has_two_planted_mistakes(ex):
    planted = [m for m in MISTAKES if m[0] == ex.id]
    assert len(planted) >= 2, f"exercise {ex.id}: {len(planted)} planted wrong answers, expected at least 2"
    assert {m[1] for m in planted} <= set(ex.names)


@pytest.mark.parametrize("mistake", MISTAKES, ids=lambda m: f"{m[0]}-{m[1]}-{m[3][:30]}")
def test_a_planted_mistake_fails_and_is_named(mistake):
    exercise_id, name, source, expect = mistake
    ex = checks.get(exercise_id)
    ns = define(_namespace(ex), source)
    for seed in (None, None):
        result = checks.evaluate(exercise_id, ns, seed=seed)
        part = next(p for p in result.parts if p.name == name)
        assert part.status == "wrong", f"the wrong {name} passed:\n{source}\n{result.report()}"
        assert expect in part.message, f"expected the message to say {expect!r}; it says {part.message!r}"
        assert result.earned == ex.points - part.points  # the other parts still pass


@pytest.mark.parametrize("ex", EXERCISES, ids=lambda e: e.id)
def test_a_starter_is_not_written_and_the_library_takes_over(ex, capsys):
    def starter(*args, **kwargs):
        ...

    stubs = [starter] * len(ex.parts)
    use = checks.check(ex.id, *stubs)
    out = capsys.readouterr().out
    assert "not written yet" in out and f"0 of {ex.points}" in out
    use = use if isinstance(use, tuple) else (use,)
    assert [u is p.library_object() for u, p in zip(use, ex.parts)] == [True] * len(ex.parts)
    assert checks.submitted(ex.id) == dict(zip(ex.names, stubs))


def test_a_function_that_calls_the_library_does_not_pass():
    from asyrp_lib.core import ddim

    def predicted_x0(x_t, eps, alpha_t):
        return ddim.predicted_x0(x_t, eps, alpha_t)

    result = checks.evaluate("01.1", {"predicted_x0": predicted_x0})
    assert result.parts[0].status == "wrong" and "calls the library's ddim.predicted_x0" in result.parts[0].message
    assert ddim.predicted_x0(torch.ones(1), torch.zeros(1), torch.tensor(0.25)).item() == 2.0  # unguarded after
    assert checks.evaluate("01.1", {"predicted_x0": ddim.predicted_x0}).parts[0].status == "library"


def test_a_function_that_raises_is_reported_with_its_error():
    def predicted_x0(x_t, eps, alpha_t):
        return x_t - undefined_name  # noqa: F821

    part = checks.evaluate("01.1", {"predicted_x0": predicted_x0}).parts[0]
    assert part.status == "wrong" and "NameError" in part.message


def test_unknown_exercise_and_wrong_count():
    with pytest.raises(KeyError, match="no exercise '99.1'"):
        checks.get("99.1")
    with pytest.raises(TypeError, match="takes 3 functions"):
        checks.evaluate("01.1", [lambda: None])
