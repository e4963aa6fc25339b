"""The import rule of ARCHITECTURE.md, read from every module's imports (ast), and the old flat module names.

Each module belongs to a floor: ``ground`` (``asyrp_lib/_utils.py``, ``asyrp_lib/images.py``), or the folder it
sits in (``core``, ``models``, ``toy``, ``beyond``, ``course``, ``front``; ``__main__`` is the command, a front
end). A module may import only the floors ALLOWED names for its own, and the floors form no cycle.
"""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "asyrp_lib"

#: Who may import whom (the table in ARCHITECTURE.md). Every floor may import itself.
ALLOWED = {
    "ground": {"ground"},
    "core": {"core", "ground"},
    "toy": {"toy", "ground"},
    "models": {"models", "core", "toy", "ground"},
    "beyond": {"beyond", "core", "models", "toy", "ground"},
    "course": {"course", "core", "models", "toy", "beyond", "ground"},
    "front": {"front", "course", "core", "models", "toy", "beyond", "ground"},
}
FLOORS = set(ALLOWED)


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def floor_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) >= 3 or (len(parts) == 2 and parts[1] in FLOORS):
        return parts[1]
    return "front" if module == "asyrp_lib.__main__" else "ground"


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(base: str, name: str) -> str:
    """``from base import name``: the module ``base.name`` if it is one, else ``base``. From the package itself
    only ``__version__`` is a name; anything else is taken for a module (so an old flat name shows as unknown)."""
    if f"{base}.{name}" in MODULES or (base == "asyrp_lib" and name != "__version__"):
        return f"{base}.{name}"
    return base


def imports_of(module: str) -> set[str]:
    """Every asyrp_lib module that ``module`` imports, at the top or inside a function."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "asyrp_lib"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            if base.split(".")[0] != "asyrp_lib":
                continue
            found |= {_resolve(base, a.name) for a in node.names}
    return found - {module}


def floor_edges() -> dict[tuple[str, str], list[str]]:
    edges: dict[tuple[str, str], list[str]] = {}
    for module in MODULES:
        for target in imports_of(module):
            a, b = floor_of(module), floor_of(target)
            if a != b:
                edges.setdefault((a, b), []).append(f"{module} → {target}")
    return edges


def test_every_module_has_a_floor_and_the_package_has_the_folders_of_the_map():
    assert {floor_of(m) for m in MODULES} == FLOORS
    for folder in FLOORS - {"ground"}:
        assert (PACKAGE / folder / "__init__.py").is_file(), folder
    assert "ARCHITECTURE.md" in {p.name for p in ROOT.iterdir()}


def test_imports_resolve_to_modules_of_the_package():
    # a typo in a relative import would make the rule below vacuous for that line
    unknown = {f"{m} → {t}" for m in MODULES for t in imports_of(m) if t not in MODULES}
    assert not unknown, sorted(unknown)


def test_each_floor_imports_only_the_floors_it_may():
    wrong = [f"{a} may not import {b}: " + ", ".join(why) for (a, b), why in sorted(floor_edges().items())
             if b not in ALLOWED[a]]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle_between_floors():
    graph: dict[str, set[str]] = {f: set() for f in FLOORS}
    for a, b in floor_edges():
        graph[a].add(b)
    state: dict[str, int] = {}

    def visit(node, path):
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                raise AssertionError("cycle between floors: " + " → ".join(path + [node, nxt]))
            if nxt not in state:
                visit(nxt, path + [node])
        state[node] = 2

    for f in sorted(graph):
        if f not in state:
            visit(f, [])


def test_the_rule_catches_a_core_module_importing_a_front_end(tmp_path, monkeypatch):
    # the checker itself: an import that breaks the rule is found
    bad = PACKAGE / "core" / "ddim.py"
    source = bad.read_text() + "\n\ndef _late():\n    from ..front import widgets  # noqa: F401\n"
    fake = tmp_path / "ddim.py"
    fake.write_text(source)
    monkeypatch.setitem(MODULES, "asyrp_lib.core.ddim", fake)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", ROOT)
    edges = floor_edges()
    assert ("core", "front") in edges and "asyrp_lib.front.widgets" in edges[("core", "front")][0]


def test_core_reads_without_the_wings():
    # core's modules import nothing outside core and the ground floor, so they can be read on their own
    outside = {f"{m} → {t}" for m in MODULES if floor_of(m) == "core" for t in imports_of(m)
               if floor_of(t) not in ("core", "ground")}
    assert not outside, sorted(outside)


# ----------------------------------------------------------------------------------------------
# The old flat names
# ----------------------------------------------------------------------------------------------
def test_old_names_give_the_moved_module_itself():
    import importlib

    import asyrp_lib

    for old, new in asyrp_lib.MOVED.items():
        moved = importlib.import_module(f"asyrp_lib.{new}")
        assert importlib.import_module(f"asyrp_lib.{old}") is moved, old
        assert getattr(asyrp_lib, old) is moved, old
        assert sys.modules[f"asyrp_lib.{old}"] is moved, old
        assert moved.__spec__.name == f"asyrp_lib.{new}", old  # its own spec, not the alias'
        assert moved.__name__ == f"asyrp_lib.{new}"
    from asyrp_lib import ddim
    from asyrp_lib.ddim import Schedule

    assert ddim is importlib.import_module("asyrp_lib.core.ddim") and Schedule is ddim.Schedule
    with pytest.raises(AttributeError):
        asyrp_lib.no_such_module  # noqa: B018
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("asyrp_lib.no_such_module")


def test_old_names_are_lazy_and_give_one_module_in_a_fresh_interpreter():
    code = ("import sys, asyrp_lib; loaded = [m for m in sys.modules if m.startswith('asyrp_lib.')]; "
            "assert not loaded, loaded; "
            "import asyrp_lib.process as old; from asyrp_lib.core import process as new; "
            "from asyrp_lib.process import run_process; from asyrp_lib import process; "
            "assert old is new is process and run_process is new.run_process; "
            "assert 'asyrp_lib.front.cli' not in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_the_alias_map_is_the_table_of_architecture_md():
    import asyrp_lib

    text = (ROOT / "ARCHITECTURE.md").read_text()
    for old, new in asyrp_lib.MOVED.items():
        assert f"| `{old}` | `{new}` |" in text, old
        assert f"asyrp_lib.{new}" in MODULES, new
    # every old flat module is in the map, and no moved module is left at the top
    assert not [m for m in MODULES if floor_of(m) == "ground" and m.rpartition(".")[2] in asyrp_lib.MOVED]


def test_nothing_in_the_repository_code_uses_the_old_names():
    # the library's relative imports are checked by test_imports_resolve_to_modules_of_the_package
    import re

    import asyrp_lib

    old = "|".join(asyrp_lib.MOVED)
    pattern = re.compile(rf"\basyrp_lib\.({old})\b|from asyrp_lib import [^\n]*\b({old})\b")
    me = Path(__file__).resolve()
    hits = []
    for folder in ("asyrp_lib", "tests", "scripts", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.resolve() == me or path == PACKAGE / "__init__.py":
                continue
            for i, line in enumerate(path.read_text().splitlines(), 1):
                m = pattern.search(line)
                if m:
                    hits.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not hits, "\n".join(hits)
