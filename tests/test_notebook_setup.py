"""Every notebook opens with the same set-up cell: a no-op where ``asyrp_lib`` imports; on Colab it clones the
course from ONE address (``COURSE_REPO``, set once at the top of the cell) and installs it.

``SETUP_CELL`` below is that cell's source, exactly; a new notebook copies it as its first code cell.
"""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
COURSE_REPO = "https://github.com/asyrp-course/asyrp-course"

SETUP_CELL = '''\
COURSE_REPO = "https://github.com/asyrp-course/asyrp-course"  # the course's repository: put your fork here
# Set-up: a no-op where asyrp_lib already imports; elsewhere (Colab) it clones COURSE_REPO and installs it.
try:
    import asyrp_lib
except ImportError:
    import importlib, os, subprocess, sys
    course_dir = os.path.abspath("asyrp-course")
    if not os.path.isdir(os.path.join(course_dir, "asyrp_lib")):
        subprocess.run(["git", "clone", "--depth", "1", COURSE_REPO, course_dir], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", course_dir], check=True)
    sys.path.insert(0, course_dir)
    importlib.invalidate_caches()
    import asyrp_lib
print("asyrp_lib", asyrp_lib.__version__)'''


def _notebooks():
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def _first_code_cell(path: Path) -> str:
    nb = json.loads(path.read_text(encoding="utf-8"))
    cell = next(c for c in nb["cells"] if c["cell_type"] == "code")
    src = cell["source"]
    return "".join(src) if isinstance(src, list) else src


def test_the_snippet_sets_the_address_once_at_the_top():
    assert SETUP_CELL.splitlines()[0].startswith(f'COURSE_REPO = "{COURSE_REPO}"')
    assert SETUP_CELL.count("https://") == 1 and SETUP_CELL.count("COURSE_REPO =") == 1
    compile(SETUP_CELL, "<setup cell>", "exec")


def test_there_are_notebooks():
    assert len(_notebooks()) >= 8


@pytest.mark.parametrize("path", _notebooks(), ids=lambda p: p.name)
def test_notebook_starts_with_the_setup_cell(path):
    src = _first_code_cell(path)
    assert src == SETUP_CELL, (f"{path.name}: its first code cell is not the course's set-up cell; copy SETUP_CELL "
                               f"from {Path(__file__).name}")
    addresses = re.findall(r"https?://[^\s\"']+", src)
    assert addresses == [COURSE_REPO]


def test_setup_is_a_no_op_where_asyrp_lib_imports(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail(f"ran {a}"))
    ns = {}
    exec(SETUP_CELL, ns)
    assert ns["asyrp_lib"].__name__ == "asyrp_lib" and list(tmp_path.iterdir()) == []


def test_setup_clones_course_repo_and_installs_it(monkeypatch, tmp_path, capsys):
    """Where asyrp_lib does not import: clone COURSE_REPO (once), pip install -e it, then import it."""
    import asyrp_lib

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    calls = []

    def run(cmd, check):
        calls.append(cmd)
        assert check is True
        if cmd[:2] == ["git", "clone"]:
            (Path(cmd[-1]) / "asyrp_lib").mkdir(parents=True)
        else:  # pip install: from now on the package imports
            monkeypatch.setitem(sys.modules, "asyrp_lib", asyrp_lib)
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(subprocess, "run", run)
    fork = "https://github.com/someone/asyrp-course-fork"
    for _ in range(2):  # a second run (runtime restarted, files kept) does not clone again
        monkeypatch.setitem(sys.modules, "asyrp_lib", None)  # import asyrp_lib raises ImportError
        exec(SETUP_CELL.replace(COURSE_REPO, fork), {})
    course_dir = str(tmp_path / "asyrp-course")
    assert calls == [["git", "clone", "--depth", "1", fork, course_dir],
                     [sys.executable, "-m", "pip", "install", "-q", "-e", course_dir],
                     [sys.executable, "-m", "pip", "install", "-q", "-e", course_dir]]
    assert sys.path[0] == course_dir
    assert "asyrp_lib" in capsys.readouterr().out
