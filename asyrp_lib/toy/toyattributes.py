"""The toy face world's attributes: their names, their values and the smile's labels.

The definitions alone, with no renderer and no torch, so that both ``toyworld`` (which re-exports all of
them and documents each attribute) and ``oracle`` (whose heads follow them) can import them.

Contents: ``ATTRIBUTES``, ``CATEGORICAL``, ``SMILE_THRESHOLD``, ``SMILE_LABELS`` and ``smile_label``.
"""
from __future__ import annotations

ATTRIBUTES: dict[str, tuple] = {
    "smile": (-1.0, 1.0),
    "eyes": ("open", "closed"),
    "glasses": ("no", "yes"),
    "hair": ("none", "short", "long"),
    "hair_color": ("black", "brown", "blond", "red"),
    "skin": ("light", "medium", "dark"),
    "background": ("blue", "green", "gray", "purple"),
}
"""Attribute name -> allowed values; for ``smile`` the (min, max) of its continuous range."""

CATEGORICAL = tuple(k for k in ATTRIBUTES if k != "smile")
SMILE_THRESHOLD = 0.33
SMILE_LABELS = ("frowning", "neutral", "smiling")


def smile_label(smile: float) -> str:
    """The 3-way label of a smile value: "frowning" (< -0.33), "neutral", or "smiling" (> 0.33)."""
    if smile > SMILE_THRESHOLD:
        return "smiling"
    if smile < -SMILE_THRESHOLD:
        return "frowning"
    return "neutral"
