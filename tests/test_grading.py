"""``asyrp grade``: a folder of tiny synthetic submissions (a right and a wrong answer to exercise 01.1, a cell that
raises, an endless loop, a notebook of another course, invalid JSON, a notebook without exercises) graded in one
run; the rows, points, statuses, the JSON file and the exit status."""
from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys

import nbformat
import pytest

from _course import PREAMBLE, REPO, sn

from asyrp_lib.course import checks, grading

pytestmark = pytest.mark.slow

BADGE = ("[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research."
         "google.com/github/someone/fork/blob/main/notebooks/{}.ipynb)\n\n# {} · a notebook")
TIMEOUT = 30  # seconds per notebook in the folder graded below (the endless loop spends all of it)


def _solution(name: str) -> str:
    blocks = sn.solution_blocks((REPO / "notebooks" / "solutions" / "01_ddim.md").read_text(encoding="utf-8"))
    code = sn.definition_for(name, blocks)
    assert code is not None
    return code


def _notebook(path, first: str, *cells: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(first)] + [nbformat.v4.new_code_cell(c) for c in cells]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))


SETUP = PREAMBLE + "from asyrp_lib.course.checks import check\n"
CHECK_01_1 = "predicted_x0, direction_to_xt, ddim_sigma = check('01.1', predicted_x0, direction_to_xt, ddim_sigma)"
WRONG_P = "def predicted_x0(x_t, eps, alpha_t):\n    return (x_t + (1 - alpha_t).sqrt() * eps) / alpha_t.sqrt()\n"


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Grade one folder of every kind of submission through the command line (one run, shared by the tests)."""
    root = tmp_path_factory.mktemp("grading")
    folder = root / "submissions"
    # alice: 01.1 solved and checked; 01.2 solved, its check never ran (graded from the namespace); 01.3 missing
    _notebook(folder / "alice" / "01_ddim.ipynb", BADGE.format("01_ddim", "01"), SETUP,
              "\n\n".join(_solution(n) for n in ("predicted_x0", "direction_to_xt", "ddim_sigma")), CHECK_01_1,
              _solution("ddim_step"))
    # bob (one file, found by its title): a wrong P_t, checked; a cell that raises; then 01.2 solved
    _notebook(folder / "bob_ddim_homework.ipynb", "# 01 · DDIM, my version", SETUP,
              WRONG_P + "\n" + "\n\n".join(_solution(n) for n in ("direction_to_xt", "ddim_sigma")), CHECK_01_1,
              "ratio = 1 / 0", _solution("ddim_step"))
    # carol: an endless loop (badge of 01)
    _notebook(folder / "carol" / "work.ipynb", BADGE.format("01_ddim", "01"), "x = 1", "while True:\n    pass")
    # dave: another course's notebook; erin: not JSON; frank: notebook 00 (found by its file name)
    _notebook(folder / "dave" / "notes.ipynb", "# Linear algebra, week 3", "print('hello')")
    (folder / "erin_01_ddim.ipynb").write_text('{"cells": [', encoding="utf-8")
    _notebook(folder / "frank" / "00_tour.ipynb", "A tour", "print('tour')")
    # gus: the kernel dies; hana: the grading cell cannot import the checks
    _notebook(folder / "gus" / "01_ddim.ipynb", "# 01 · DDIM", "import os\nos._exit(3)", "print('never')")
    _notebook(folder / "hana" / "01_ddim.ipynb", "# 01 · DDIM",
              "import sys\nsys.modules['asyrp_lib.course.checks'] = None")
    # not a submission: hidden folders
    _notebook(folder / "alice" / ".ipynb_checkpoints" / "01_ddim-checkpoint.ipynb", "x", "1 / 0")

    out = root / "grades.json"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = grading.main([str(folder), "--json", str(out), "--timeout", str(TIMEOUT), "--jobs", "3",
                             "--executed", str(root / "executed")])
    text = stdout.getvalue()
    print(text)
    return {"code": code, "text": text, "json": json.loads(out.read_text(encoding="utf-8")), "folder": folder,
            "executed": root / "executed"}


def _row(graded, student):
    rows = [r for r in graded["json"]["notebooks"] if r["student"] == student]
    assert len(rows) == 1, rows
    return rows[0]


def _ex(row, exercise_id):
    return next(e for e in row["exercises"] if e["exercise"] == exercise_id)


def test_the_folder_is_graded_and_the_exit_status_is_0(graded):
    assert graded["code"] == 0
    assert sorted(r["student"] for r in graded["json"]["notebooks"]) == ["alice", "bob", "carol", "dave", "erin",
                                                                         "frank", "gus", "hana"]


def test_a_right_answer_earns_its_points_from_check_or_from_the_namespace(graded):
    row = _row(graded, "alice")
    assert (row["notebook"], row["identified_by"], row["status"]) == ("01_ddim", "Colab badge", "graded")
    ex1, ex2, ex3 = (_ex(row, i) for i in ("01.1", "01.2", "01.3"))
    assert (ex1["earned"], ex1["points"], ex1["source"]) == (3, 3, "check")
    assert (ex2["earned"], ex2["points"], ex2["source"]) == (1, 1, "namespace")
    assert ex3["earned"] == 0 and ex3["parts"][0]["status"] == "not written"
    assert (row["earned"], row["points"]) == (4, 5)


def test_a_wrong_answer_and_a_cell_that_raises(graded):
    row = _row(graded, "bob")
    assert (row["notebook"], row["identified_by"], row["status"]) == ("01_ddim", "title", "raised")
    assert row["errors"] == [{"cell": 5, "source": "ratio = 1 / 0", "error": "ZeroDivisionError: division by zero"}]
    assert "cell 5" in row["message"] and "ZeroDivisionError" in row["message"]
    parts = {p["name"]: p for p in _ex(row, "01.1")["parts"]}
    assert parts["predicted_x0"]["status"] == "wrong" and "sign of the ε term" in parts["predicted_x0"]["message"]
    assert parts["direction_to_xt"]["status"] == parts["ddim_sigma"]["status"] == "passed"
    # the cell after the error ran: its ddim_step is graded from the namespace
    assert _ex(row, "01.2")["earned"] == 1 and _ex(row, "01.2")["source"] == "namespace"
    assert (row["earned"], row["points"]) == (3, 5)


def test_the_executed_notebooks_are_saved_with_their_outputs(graded):
    nb = nbformat.read(str(graded["executed"] / "alice" / "01_ddim.ipynb"), as_version=4)
    assert "Exercise 01.1" in "".join(o.get("text", "") for o in nb.cells[3].outputs)
    assert "ASYRP-GRADE " in "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    assert (graded["executed"] / "bob_ddim_homework.ipynb").is_file()
    assert not (graded["executed"] / "dave").exists()


def test_an_endless_loop_times_out_and_its_kernel_is_stopped(graded):
    row = _row(graded, "carol")
    assert row["status"] == "timed out" and row["exercises"] == []
    assert f"timed out after {TIMEOUT} s" in row["message"] and "cell 3" in row["message"]
    assert row["seconds"] < TIMEOUT + 30


def test_rows_that_are_not_run(graded):
    dave, erin, frank = (_row(graded, s) for s in ("dave", "erin", "frank"))
    assert (dave["status"], dave["notebook"]) == ("not a course notebook", None)
    assert erin["status"] == "invalid" and "not valid JSON" in erin["message"]
    assert (erin["notebook"], erin["identified_by"]) == ("01_ddim", "file name")
    assert (frank["status"], frank["notebook"], frank["identified_by"]) == ("no exercises", "00_tour", "file name")


def test_a_kernel_that_dies_and_a_grading_cell_that_fails(graded):
    gus, hana = _row(graded, "gus"), _row(graded, "hana")
    assert gus["status"] == "kernel died" and "cell 2" in gus["message"] and gus["exercises"] == []
    assert hana["status"] == "grading failed" and "ModuleNotFoundError" in hana["message"]


def test_the_table_student_by_exercise(graded):
    data = graded["json"]
    assert [e["id"] for e in data["exercises"]] == ["01.1", "01.2", "01.3"]
    students = {s["student"]: s for s in data["students"]}
    assert (students["alice"]["earned"], students["alice"]["points"]) == (4, 5)
    assert (students["bob"]["earned"], students["bob"]["points"]) == (3, 5)
    assert students["carol"]["exercises"]["01.1"]["status"] == "not graded"
    assert students["erin"]["exercises"]["01.1"]["status"] == "missing"
    lines = graded["text"].splitlines()
    header = next(line for line in lines if line.startswith("student"))
    assert header.split() == ["student", "01.1", "01.2", "01.3", "total"]
    assert next(line for line in lines if line.startswith("alice ")).split() == ["alice", "3/3", "1/1", "0/1", "4/5"]
    assert next(line for line in lines if line.startswith("bob ")).split() == ["bob", "2/3", "1/1", "0/1", "3/5"]
    assert next(line for line in lines if line.startswith("carol ")).split() == ["carol", "×", "×", "×", "0/5"]
    assert next(line for line in lines if line.startswith("dave ")).split() == ["dave", "—", "—", "—", "0/5"]
    assert any("01.1 predicted_x0 ✗" in line and "sign of the ε term" in line for line in lines)


def test_course_notebooks_are_the_repositorys():
    assert grading.COURSE_NOTEBOOKS == tuple(sorted(p.stem for p in (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")))
    assert {ex.notebook for ex in checks.exercises()} <= set(grading.COURSE_NOTEBOOKS)


def test_each_course_notebook_is_identified_by_its_colab_badge():
    for path in sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        first = json.loads(path.read_text(encoding="utf-8"))["cells"][:1]
        assert grading.identify({"cells": first}, "x.ipynb") == (path.stem, "Colab badge"), path.name


def test_identify_badge_then_title_then_file_name():
    def nb(*cells):
        return {"cells": [{"cell_type": "markdown", "source": c} for c in cells]}

    assert grading.identify(nb(BADGE.format("05_h_space", "05")), "x.ipynb") == ("05_h_space", "Colab badge")
    # the badge wins over the title and the file name; an unknown badge falls through
    assert grading.identify(nb(BADGE.format("05_h_space", "01")), "01_ddim.ipynb") == ("05_h_space", "Colab badge")
    assert grading.identify(nb(BADGE.format("12_other", "07")), "x.ipynb") == ("07_intervals", "title")
    assert grading.identify(nb("intro", "# 03 · LPIPS"), "x.ipynb") == ("03_lpips", "title")
    assert grading.identify(nb("# 3 · LPIPS"), "jo_06_training_f_t (1).ipynb") == ("06_training_f_t", "file name")
    assert grading.identify(nb("# Notes"), "101_ddim.ipynb") == (None, None)
    assert grading.identify(None, "09_beyond.ipynb") == ("09_beyond", "file name")


def test_folder_layout(tmp_path):
    folder = tmp_path / "course"
    for rel in ("ann/week1/01_ddim.ipynb", "ann/05_h_space.ipynb", "bo_05_h_space.ipynb", "cy.ipynb",
                "01_ddim.ipynb", ".hidden/01_ddim.ipynb", "__MACOSX/x.ipynb", "ann/.ipynb_checkpoints/c.ipynb",
                "notes.txt"):
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text("{}")
    found = [(s.student, s.file) for s in grading.find_submissions(folder)]
    assert found == [("course", "01_ddim.ipynb"), ("ann", "ann/05_h_space.ipynb"), ("ann", "ann/week1/01_ddim.ipynb"),
                     ("bo", "bo_05_h_space.ipynb"), ("cy", "cy.ipynb")]


def test_the_table_counts_the_best_of_a_students_notebooks_of_one_course_notebook():
    ex = checks.exercises("01")
    full = [{"exercise": e.id, "points": e.points, "earned": e.points, "parts": []} for e in ex]
    some = [{"exercise": e.id, "points": e.points, "earned": 0, "parts": []} for e in ex]
    rows = [grading.Graded("ann", "ann/a.ipynb", "01_ddim", "title", "raised", exercises=some),
            grading.Graded("ann", "ann/b.ipynb", "01_ddim", "title", "graded", exercises=full),
            grading.Graded("ann", "ann/c.ipynb", "01_ddim", "title", "timed out"),
            grading.Graded("bo", "bo.ipynb", "01_ddim", "title", "timed out"),
            grading.Graded("cy", "cy.ipynb", None, None, "not a course notebook")]
    students = {s["student"]: s for s in grading.table(rows)["students"]}
    total = sum(e.points for e in ex)
    assert (students["ann"]["earned"], students["ann"]["points"]) == (total, total)
    assert {c["file"] for c in students["ann"]["exercises"].values()} == {"ann/b.ipynb"}
    assert {c["status"] for c in students["bo"]["exercises"].values()} == {"not graded"}
    assert {c["status"] for c in students["cy"]["exercises"].values()} == {"missing"}
    assert "ann/c.ipynb" in grading.report(rows)


def test_cli_grade_exit_status_and_json_without_running_a_kernel(tmp_path, capsys):
    from asyrp_lib.front.cli import main

    folder = tmp_path / "subs"
    _notebook(folder / "dave.ipynb", "# Notes", "print(1)")
    _notebook(folder / "gail" / "08_playground.ipynb", BADGE.format("08_playground", "08"), "print(1)")
    (folder / "hal_01_ddim.ipynb").write_text('{"nbformat": 4, "cells": "no"}', encoding="utf-8")
    out = tmp_path / "g.json"
    assert main(["grade", str(folder), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "not a course notebook" in text and "08_playground has no graded exercises" in text
    data = json.loads(out.read_text(encoding="utf-8"))
    statuses = {r["student"]: r["status"] for r in data["notebooks"]}
    assert statuses == {"dave": "not a course notebook", "gail": "no exercises", "hal": "invalid"}
    hal = next(r for r in data["notebooks"] if r["student"] == "hal")
    assert "not a valid notebook" in hal["message"] and hal["notebook"] == "01_ddim"
    assert [e["id"] for e in data["exercises"]] == [ex.id for ex in checks.exercises("01")]
    # nothing to grade: exit status 2, one line on stderr
    (tmp_path / "empty").mkdir()
    assert main(["grade", str(tmp_path / "empty")]) == 2
    assert "no notebook" in capsys.readouterr().err
    assert main(["grade", str(tmp_path / "nowhere")]) == 2
    (tmp_path / "notes.txt").write_text("x")
    assert main(["grade", str(tmp_path / "notes.txt")]) == 2
    assert "neither a folder nor a notebook" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["grade", str(folder), "--timeout", "0"])


def test_python_dash_m_help():
    result = subprocess.run([sys.executable, "-m", "asyrp_lib.course.grading", "--help"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and "FOLDER/<student>/" in result.stdout and "--timeout" in result.stdout
