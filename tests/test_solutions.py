"""The exercises' solutions (notebooks/solutions/*.md) against the notebooks' starter cells.

Always: every starter of every notebook (a line ``name = ...``, or a function or class left as ``...``) has
solution code, and every solution block is valid Python. With ``ASYRP_RUN_SOLUTIONS=1``: the solved copies (scripts/solve_notebooks.py)
run top to bottom, check cells included, in the current profile (slow: every exercise trains or edits).
"""
import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import solve_notebooks as sn  # noqa: E402

NOTEBOOKS = sorted(p for p in (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_every_notebook_has_a_solutions_file():
    missing = [p.name for p in NOTEBOOKS if not (REPO / "notebooks" / "solutions" / f"{p.stem}.md").is_file()]
    assert NOTEBOOKS and not missing, missing


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_starter_has_runnable_solution_code(path):
    blocks = sn.solution_blocks((REPO / "notebooks" / "solutions" / f"{path.stem}.md").read_text())
    for i, block in enumerate(blocks):
        try:
            ast.parse(block)
        except SyntaxError as e:
            pytest.fail(f"{path.stem}: solution block {i + 1} is not valid Python: {e}")
    nb, filled, missing = sn.solve(path)
    assert not missing, f"{path.stem}: starters without solution code: {missing}"
    original = json.loads(path.read_text())
    names = [name for _, _, name in sn.starters(original)] + [name for _, name in sn.def_starters(original)]
    assert filled == names
    assert not sn.starters(nb) and not sn.def_starters(nb), "a starter survived in the solved notebook"
    for cell in nb["cells"]:  # the solved notebook's code cells parse (IPython magics aside)
        if cell["cell_type"] == "code":
            ast.parse("\n".join(l for l in "".join(cell["source"]).split("\n") if not l.lstrip().startswith(("%", "!"))))


def test_solve_replaces_the_starter_line_only(tmp_path):
    nb = {"cells": [{"cell_type": "code", "source": ["x = ...  # e.g. 3\n", "print(x)"], "outputs": [1],
                     "execution_count": 4, "metadata": {}}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (tmp_path / "solutions").mkdir()
    path = tmp_path / "99_demo.ipynb"
    path.write_text(json.dumps(nb))
    assert sn.solution_for("x", ["y = 1", "for x in (1, 2):\n    pass", "x = 2"]) == "for x in (1, 2):\n    pass"
    assert sn.solution_for("x", ["x == 2", "xx = 1"]) is None
    old = sn.NOTEBOOKS
    sn.NOTEBOOKS = tmp_path
    try:
        (tmp_path / "solutions" / "99_demo.md").write_text("text\n```python\nx = 3\n```\n")
        solved, filled, missing = sn.solve(path)
    finally:
        sn.NOTEBOOKS = old
    assert (filled, missing) == (["x"], [])
    assert "".join(solved["cells"][0]["source"]) == "x = 3\nprint(x)"
    assert solved["cells"][0]["outputs"] == [] and solved["cells"][0]["execution_count"] is None


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("ASYRP_RUN_SOLUTIONS") != "1",
                    reason="executing the solved notebooks is slow; set ASYRP_RUN_SOLUTIONS=1 to run them")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_solved_notebook_runs(path, tmp_path):
    subprocess.run([sys.executable, str(REPO / "scripts" / "solve_notebooks.py"), str(tmp_path), path.stem],
                   check=True)
    solved = tmp_path / path.name  # run outside the repository's notebooks/, which nbval must not see twice
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
                           "--nbval-current-env", "--nbval-cell-timeout=1200", str(solved)],
                          cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_solve_replaces_a_function_starter_whole(tmp_path):
    starter = ('import torch\n\ndef double(x):\n    """2·x."""\n    ...\n\nclass Net:\n    def forward(self, x):\n'
               '        ...\n\nprint(double(1))')
    nb = {"cells": [{"cell_type": "code", "source": [starter], "outputs": [], "execution_count": None,
                     "metadata": {}}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    assert sn.def_starters(nb) == [(0, "double"), (0, "Net")]
    (tmp_path / "solutions").mkdir()
    path = tmp_path / "98_demo.ipynb"
    path.write_text(json.dumps(nb))
    (tmp_path / "solutions" / "98_demo.md").write_text(
        "```python\ndef double(x):\n    return 2 * x\n\n\nclass Net:\n    def forward(self, x):\n        return x\n```\n")
    old = sn.NOTEBOOKS
    sn.NOTEBOOKS = tmp_path
    try:
        solved, filled, missing = sn.solve(path)
    finally:
        sn.NOTEBOOKS = old
    assert (filled, missing) == (["double", "Net"], [])
    src = "".join(solved["cells"][0]["source"])
    assert src == ("import torch\n\ndef double(x):\n    return 2 * x\n\nclass Net:\n    def forward(self, x):\n"
                   "        return x\n\nprint(double(1))")
    assert not sn.def_starters(solved)
