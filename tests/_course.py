"""Helpers for the tests of the course's exercise checks: the solutions' functions, read from
``notebooks/solutions/<notebook>.md`` exactly as ``scripts/solve_notebooks.py`` puts them into a notebook."""
from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import solve_notebooks as sn  # noqa: E402

# What a notebook has imported by the time its exercises come (the solutions may use these names).
PREAMBLE = """\
import math
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
"""


def solution_namespace(notebook: str, names) -> dict:
    """A namespace in which the solution of each function or class in ``names`` is defined, in order."""
    blocks = sn.solution_blocks((REPO / "notebooks" / "solutions" / f"{notebook}.md").read_text(encoding="utf-8"))
    ns: dict = {"__name__": "__student__"}
    exec(PREAMBLE, ns)
    for name in names:
        code = sn.definition_for(name, blocks)
        assert code is not None, f"notebooks/solutions/{notebook}.md has no code defining {name}"
        exec(compile(code, f"<solution {notebook}:{name}>", "exec"), ns)
    return ns


def define(ns: dict, source: str) -> dict:
    """A copy of ``ns`` with ``source`` (a wrong answer) executed in it."""
    ns = dict(ns)
    exec(compile(source, "<wrong answer>", "exec"), ns)
    return ns
