"""Write solved copies of the course notebooks: each exercise's starter line ``name = ...`` replaced by the
solution code that assigns ``name`` in ``notebooks/solutions/<notebook>.md``.

    python scripts/solve_notebooks.py OUT_FOLDER [NOTEBOOK ...]     # default: every notebook with solutions

The solved notebooks are for running (``pytest --nbval-lax OUT_FOLDER``; ``tests/test_solutions.py`` does it
when ``ASYRP_RUN_SOLUTIONS=1``), not for reading: the solutions' explanations stay in the markdown files.
A solution block counts for a starter when it assigns the starter's name (or loops over it); of several such
blocks the first is used. Starters without one are left as they are and listed on stderr.
"""
from __future__ import annotations

import argparse
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
        text = "\n".join(lines)
        nb["cells"][i]["source"] = [s + "\n" for s in text.split("\n")[:-1]] + [text.split("\n")[-1]]
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
