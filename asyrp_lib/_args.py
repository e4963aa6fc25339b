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


def timestep_arg(value: str) -> int:
    """A non-negative integer; its upper bound (the schedule's T - 1) is checked once the model is loaded."""
    try:
        v = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer timestep, got {value!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer timestep ≥ 0, got {value!r}")
    return v


def seconds_arg(value: str) -> float:
    """A finite number of seconds ≥ 0."""
    try:
        v = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds ≥ 0, got {value!r}") from None
    if not 0 <= v < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds ≥ 0, got {value!r}")
    return v
