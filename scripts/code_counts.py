"""Counts that say how the library is laid out: modules per folder, long functions, functions with many parameters,
private names used across modules.

    python scripts/code_counts.py                 # the working tree's asyrp_lib/
    python scripts/code_counts.py --list          # … and every function it counts, by name
    python scripts/code_counts.py --root OTHER/asyrp_lib

A function counts as long above 60 lines (its ``def`` to its last line, docstring included) and as having many
parameters above 8 (``self``/``cls`` left out; a dataclass's generated ``__init__`` is not a function of the source).
A private name used across modules is one a module imports (``from .x import _name``) or reads as an attribute
(``obj._name``) without defining it, while another library module defines it.
"""
from __future__ import annotations

import argparse
import ast
import sys
from collections import Counter
from pathlib import Path

LONG = 60
MANY = 8


def _params(fn: ast.FunctionDef) -> int:
    a = fn.args
    names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]
    if names and names[0] in ("self", "cls"):
        names = names[1:]
    return len(names) + (a.vararg is not None) + (a.kwarg is not None)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _private_defined(tree) -> set[str]:
    """Private names a module defines: functions, classes, methods, assigned names and ``self._x`` attributes."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and _is_private(node.name):
            out.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and _is_private(node.id):
            out.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and _is_private(node.attr):
            out.add(node.attr)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and _is_private(node.target.id):
            out.add(node.target.id)
    return out


def _private_used(tree) -> set[str]:
    """Private names a module reads as an attribute (``x._name``) or imports from a library module."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load) and _is_private(node.attr):
            out.add(node.attr)
        elif isinstance(node, ast.ImportFrom) and node.level:
            out.update(a.name for a in node.names if _is_private(a.name))
    return out


def _module_name(root: Path, path: Path) -> str:
    return ".".join(path.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__")


def counts(root: Path) -> dict:
    files = sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)
    modules = {_module_name(root, p): p for p in files}
    per_folder = Counter(str(p.parent.relative_to(root.parent)) for p in files)
    long_fns, many_params, private = [], [], []
    defined, used = {}, {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > LONG:
                    long_fns.append(f"{name}.{node.name} ({length} lines)")
                if _params(node) > MANY:
                    many_params.append(f"{name}.{node.name} ({_params(node)} parameters)")
        defined[name] = _private_defined(tree)
        used[name] = _private_used(tree)
    for name, names in used.items():
        for attr in sorted(names - defined[name]):
            owners = [m for m, d in defined.items() if m != name and attr in d]
            if owners:
                private.append(f"{name} uses {attr} of {', '.join(sorted(owners))}")
    return {"modules": len(files), "per_folder": dict(sorted(per_folder.items())), "long": sorted(long_fns),
            "many_params": sorted(many_params), "private_across": sorted(set(private))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default=str(Path(__file__).resolve().parents[1] / "asyrp_lib"))
    p.add_argument("--list", action="store_true", help="list every counted function and name")
    args = p.parse_args(argv)
    c = counts(Path(args.root).resolve())
    print(f"modules: {c['modules']}  ({', '.join(f'{k}: {v}' for k, v in c['per_folder'].items())})")
    for key, label in (("long", f"functions over {LONG} lines"), ("many_params", f"functions over {MANY} parameters"),
                       ("private_across", "private names used across modules")):
        print(f"{label}: {len(c[key])}")
        if args.list:
            for item in c[key]:
                print(f"    {item}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
