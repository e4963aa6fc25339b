"""Ground floor: argument types (argparse ``type=``) shared by the ``asyrp`` command and ``asyrp grade``;
imports nothing heavy, so ``--help`` stays fast."""
from __future__ import annotations

import argparse


def positive_int_arg(value: str) -> int:
    """An integer ≥ 1, as argparse's ``type``."""
    try:
        v = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return v


def positive_float_arg(value: str) -> float:
    """A finite number > 0, as argparse's ``type``."""
    try:
        v = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value!r}") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value!r}")
    return v
