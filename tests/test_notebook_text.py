"""The notebooks' sources contain no control characters.

A LaTeX string written without raw quoting turns ``\\frac`` into form feed + "rac", ``\\text``
into TAB + "ext", ``\\bar`` into backspace + "ar", ``\\alpha`` into BEL + "lpha" and
``\\varepsilon`` into vertical tab + "arepsilon"; the rendered equation is then silently wrong.
No notebook or solution file in this course uses a literal TAB, so TAB is forbidden as well:
only "\\n" is allowed below ord 32 (and DEL, 0x7f, is forbidden too).

Pure JSON/text reading: nothing is executed or imported from the library.
"""

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
SOLUTIONS = NOTEBOOKS / "solutions"
ALLOWED = {"\n"}


def _is_bad(ch: str) -> bool:
    return (ord(ch) < 32 and ch not in ALLOWED) or ch == "\x7f"


def _notebook_files():
    return sorted(p for p in NOTEBOOKS.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def _solution_files():
    return sorted(p for p in SOLUTIONS.rglob("*.md") if ".ipynb_checkpoints" not in p.parts)


def _problems(text: str, where: str):
    out = []
    for i, ch in enumerate(text):
        if _is_bad(ch):
            context = text[max(0, i - 25) : i + 25]
            out.append(f"{where}: {ch!r} at char {i}, context {context!r}")
    return out


def test_found_the_notebooks():
    notebooks = _notebook_files()
    assert len(notebooks) >= 8, f"only {len(notebooks)} notebooks found under {NOTEBOOKS}"
    assert len(_solution_files()) >= 1, f"no solution .md files under {SOLUTIONS}"


@pytest.mark.parametrize("path", _notebook_files(), ids=lambda p: str(p.relative_to(NOTEBOOKS)))
def test_notebook_sources_have_no_control_characters(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert nb.get("cells"), f"{path.name}: no cells"
    problems = []
    for idx, cell in enumerate(nb["cells"]):
        source = cell.get("source", "")
        if isinstance(source, list):
            source = "".join(source)
        where = f"{path.relative_to(ROOT)} cell {idx} ({cell.get('cell_type')})"
        problems += _problems(source, where)
    assert not problems, "control characters in notebook sources:\n" + "\n".join(problems)


@pytest.mark.parametrize("path", _solution_files(), ids=lambda p: str(p.relative_to(NOTEBOOKS)))
def test_solution_files_have_no_control_characters(path):
    # newline="" keeps "\r" visible instead of translating it away
    with path.open(encoding="utf-8", newline="") as fh:
        text = fh.read()
    problems = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        problems += _problems(line, f"{path.relative_to(ROOT)} line {lineno}")
    assert not problems, "control characters in solution files:\n" + "\n".join(problems)
