"""Write solved copies of the course notebooks: each exercise's starter replaced by its solution code in
``notebooks/solutions/<notebook>.md``.

Two kinds of starter: a line ``name = ...`` (an exploring exercise: the solution block that assigns ``name``
replaces the line), and a function or class the student writes, ``def name(...):`` whose body is a docstring and
``...`` (for a class: any of its methods so), which the solution block defining ``name`` replaces whole.

    python scripts/solve_notebooks.py OUT_FOLDER [NOTEBOOK ...]     # default: every notebook with solutions

The solved notebooks are for running (``pytest --nbval-lax OUT_FOLDER``; ``tests/test_solutions.py`` does it
when ``ASYRP_RUN_SOLUTIONS=1``), not for reading: the solutions' explanations stay in the markdown files.
A solution block counts for a starter when it assigns the starter's name (or loops over it); of several such
blocks the first is used. Starters without one are left as they are and listed on stderr.
"""
from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
STARTER = re.compile(r"^(\w+) = \.\.\.(\s.*)?$")
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def starters(nb: dict) -> list[tuple[int, int, str]]:
    """(cell index, line index, name) of every starter line ``name = ...`` in the notebook's code cells."""
    found = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        for j, line in enumerate("".join(cell["source"]).split("\n")):
            m = STARTER.match(line)
            if m:
                found.append((i, j, m.group(1)))
    return found


def _is_stub(node) -> bool:
    """A def whose body is an optional docstring and ``...``; a class with such a method."""
    if isinstance(node, ast.ClassDef):
        return any(_is_stub(n) for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return False
    body = list(node.body)
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]
    return (len(body) == 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
            and body[0].value.value is Ellipsis)


def _parse(source: str):
    try:
        return ast.parse(source)
    except SyntaxError:
        return None


def def_starters(nb: dict) -> list[tuple[int, str]]:
    """(cell index, name) of every function or class the student writes (a top-level def left as ``...``)."""
    found = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        tree = _parse("".join(cell["source"]))
        for node in (tree.body if tree else []):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and _is_stub(node):
                found.append((i, node.name))
    return found


def definition_for(name: str, blocks: list[str]) -> str | None:
    """The source of the top-level ``def name`` / ``class name`` in the first block that has one (decorators
    included)."""
    for block in blocks:
        tree = _parse(block)
        for node in (tree.body if tree else []):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
                start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                return "\n".join(block.split("\n")[start - 1:node.end_lineno])
    return None


def _replace_definition(source: str, name: str, code: str) -> str:
    tree = ast.parse(source)
    node = next(n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                and n.name == name)
    start = min([node.lineno] + [d.lineno for d in node.decorator_list])
    lines = source.split("\n")
    return "\n".join(lines[:start - 1] + code.split("\n") + lines[node.end_lineno:])


def _set_source(cell: dict, text: str) -> None:
    parts = text.split("\n")
    cell["source"] = [s + "\n" for s in parts[:-1]] + [parts[-1]]


def solution_blocks(markdown: str) -> list[str]:
    return [b.rstrip("\n") for b in BLOCK.findall(markdown)]


def solution_for(name: str, blocks: list[str]) -> str | None:
    """The first block that assigns ``name`` on one of its lines (``name = …``, indented or not, or a loop
    ``for name in …`` whose last value the starter cell then uses)."""
    pattern = re.compile(rf"^\s*(?:{re.escape(name)}\s*=(?!=)|for\s+{re.escape(name)}\s+in\b)", re.M)
    return next((b for b in blocks if pattern.search(b)), None)


def solve(nb_path: Path) -> tuple[dict, list[str], list[str]]:
    """The solved notebook, the starters it filled in and those without a solution block."""
    nb = json.loads(nb_path.read_text())
    blocks = solution_blocks((NOTEBOOKS / "solutions" / f"{nb_path.stem}.md").read_text())
    filled, missing = [], []
    for i, j, name in starters(nb):
        code = solution_for(name, blocks)
        if code is None:
            missing.append(name)
            continue
        lines = "".join(nb["cells"][i]["source"]).split("\n")
        lines[j] = code
        _set_source(nb["cells"][i], "\n".join(lines))
        filled.append(name)
    for i, name in def_starters(nb):
        code = definition_for(name, blocks)
        if code is None:
            missing.append(name)
            continue
        _set_source(nb["cells"][i], _replace_definition("".join(nb["cells"][i]["source"]), name, code))
        filled.append(name)
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    return nb, filled, missing


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", help="folder for the solved notebooks")
    p.add_argument("notebooks", nargs="*", help="notebook names or paths (default: all with a solutions file)")
    args = p.parse_args(argv)
    names = args.notebooks or sorted(f.stem for f in (NOTEBOOKS / "solutions").glob("*.md"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = NOTEBOOKS / f"{Path(name).stem}.ipynb"
        if not path.is_file():
            p.error(f"no notebook {path}")
        nb, filled, missing = solve(path)
        (out / path.name).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
        print(f"{path.name}: solved {', '.join(filled) or 'nothing'}"
              + (f"; no solution code for {', '.join(missing)}" if missing else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
