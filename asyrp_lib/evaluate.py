"""Measuring in the toy world: the oracle is the ruler.

``sample_quality`` compares what the oracle reads from generated images with what it reads from
renders: the share of well-formed faces and, per attribute, the total-variation distance between
the two label distributions.
"""
from __future__ import annotations

from collections import Counter

from . import toyworld as tw

__all__ = ["label_of", "label_distribution", "tv_distance", "sample_quality"]


def label_of(pred: dict, attribute: str) -> str:
    """The discrete label of one attribute in an oracle prediction (smile → frowning/neutral/smiling)."""
    return tw.smile_label(pred["smile"]) if attribute == "smile" else str(pred[attribute])


def label_distribution(preds: list[dict], attribute: str) -> dict[str, float]:
    counts = Counter(label_of(p, attribute) for p in preds)
    n = max(1, len(preds))
    return {k: v / n for k, v in counts.items()}


def tv_distance(p: dict[str, float], q: dict[str, float]) -> float:
    """Total variation distance ½ Σ |p - q| between two discrete distributions."""
    return 0.5 * sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in set(p) | set(q))


def sample_quality(sample_preds: list[dict], reference_preds: list[dict], face_threshold: float = 0.5) -> dict:
    """Face rate of generated images and per-attribute TV distance to the reference (renders)."""
    if not sample_preds or not reference_preds:
        raise ValueError("sample_preds, reference_preds: expected non-empty lists of oracle predictions")
    faces = [p for p in sample_preds if p["face"] >= face_threshold]
    tv = {a: tv_distance(label_distribution(faces or sample_preds, a), label_distribution(reference_preds, a))
          for a in tw.ATTRIBUTES if not (a == "hair_color")}
    # hair colour only means something where there is hair
    with_hair = lambda ps: [p for p in ps if p["hair"] != "none"]
    tv["hair_color"] = tv_distance(label_distribution(with_hair(faces or sample_preds), "hair_color"),
                                   label_distribution(with_hair(reference_preds), "hair_color"))
    return {"n": len(sample_preds), "face_rate": len(faces) / len(sample_preds), "tv": tv,
            "max_tv": max(tv.values())}
