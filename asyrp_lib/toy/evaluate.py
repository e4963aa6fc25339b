"""Measuring in the toy world: the oracle is the ruler.

``sample_quality`` compares what the oracle reads from generated images with what it reads from
renders: the share of well-formed faces and, per attribute, the total-variation distance between
the two label distributions.

``edit_metrics`` measures an edit of a set of source faces (issue: editing, part 1):

==================  ===========================================================================
``success``         share of edited images that are faces (oracle ``face`` ≥ ``face_threshold``)
                    on which the oracle reads the target value (smile: by label, e.g. "smiling")
``others_kept``     share of faces whose other attributes all read the same as on the source
                    (oracle on the source image, or the ground truth if given); ``hair_color`` only
                    counts where both have hair, ``smile`` by label
``lpips``           mean LPIPS(source, edited)
``s_dir``           mean directional CLIP similarity cos(ΔI, ΔT) (eq. 3 without the 1 -)
``face_rate``       share of edited images the oracle calls a face
==================  ===========================================================================

The oracle is duck-typed: anything with ``predict(images) -> list[dict]`` (``toyworld.Oracle.load()``
in real use). ``source_faces`` draws the faces to edit from fixed seed ranges: development seeds
``DEV_SEED`` … ``DEV_SEED + 9_999`` for choosing settings and optimising directions, held-out seeds
``HELDOUT_SEED`` … ``HELDOUT_SEED + 9_999`` for reported numbers only. Both ranges are disjoint from the
seeds of the toy models' training and evaluation scripts (0 … ~60 000 and 555 000, 800 001, 900 001, 987 654).
The methods side by side on the same faces (``compare_methods``) live in :mod:`asyrp_lib.beyond.compare`.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import torch

from . import toyworld as tw
from .._utils import grouped_options

__all__ = ["MetricOptions", "label_of", "label_distribution", "tv_distance", "sample_quality", "edit_metrics", "attributes_kept",
           "check_value", "source_faces", "SourceFaces", "DEV_SEED", "HELDOUT_SEED"]

#: First seed of the development faces (settings, optimising directions): DEV_SEED … DEV_SEED + 9 999.
DEV_SEED = 700_000
#: First seed of the held-out faces (reported numbers only): HELDOUT_SEED … HELDOUT_SEED + 9 999.
HELDOUT_SEED = 710_000
_SEED_SPAN = 10_000


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


# --------------------------------------------------------------------------------------------
# Source faces
# --------------------------------------------------------------------------------------------
@dataclass
class SourceFaces:
    """Faces to edit: their ground-truth attributes and renders."""

    attrs: list[dict]
    images: torch.Tensor  # (N, 3, size, size) in [-1, 1]
    seeds: list[int]  # the sample_attributes seeds they were drawn with


def check_value(attribute: str, value, name: str) -> str:
    """``value`` checked as one of ``attribute``'s labels; ``name`` is the argument named in the error."""
    if attribute not in tw.ATTRIBUTES:
        raise ValueError(f"attribute: expected one of {', '.join(tw.ATTRIBUTES)}, got {attribute!r}")
    allowed = tw.SMILE_LABELS if attribute == "smile" else tw.ATTRIBUTES[attribute]
    if value not in allowed:
        raise ValueError(f"{name}: expected one of {', '.join(allowed)} for {attribute!r}, got {value!r}")
    return value


def source_faces(attribute: str, value_to_avoid: str, n: int, seed: int = HELDOUT_SEED, *, size: int = 64,
                 device=None) -> SourceFaces:
    """``n`` toy faces that do NOT already show ``value_to_avoid`` (e.g. ``"smile", "smiling"`` → neutral and
    frowning faces), drawn with ``sample_attributes`` from ``seed``, ``seed + 1``, … (deterministic). For
    ``hair_color`` only faces with hair are drawn.

    Use ``seed=DEV_SEED`` (or above) while developing and the default ``HELDOUT_SEED`` for reported numbers;
    two sets drawn from different ranges never share a face.
    """
    check_value(attribute, value_to_avoid, "value_to_avoid")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected a positive integer, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer (DEV_SEED or HELDOUT_SEED), got {seed!r}")
    attrs, seeds = [], []
    s = seed
    while len(attrs) < n:
        for a in tw.sample_attributes(max(8, 2 * n), s):
            if attribute == "hair_color" and a["hair"] == "none":
                continue  # no hair colour to change on a bald head
            if label_of(a, attribute) != value_to_avoid and len(attrs) < n:
                attrs.append(a)
                seeds.append(s)
        s += 1
    return SourceFaces(attrs=attrs, images=tw.render(attrs, size=size, device=device), seeds=seeds)


# --------------------------------------------------------------------------------------------
# Edit metrics
# --------------------------------------------------------------------------------------------
def attributes_kept(ref: dict, edit: dict, others: Sequence[str]) -> dict[str, bool]:
    """Per attribute of ``others``: does the oracle read the same label on ``edit`` as on ``ref``? (``hair_color``
    is left out where either face is bald.)"""
    kept = {}
    for a in others:
        if a == "hair_color":
            if ref["hair"] == "none" or edit["hair"] == "none":
                continue  # invisible on a bald head: not comparable (a change of hair itself counts under "hair")
        kept[a] = label_of(ref, a) == label_of(edit, a)
    return kept


@dataclass(frozen=True)
class MetricOptions:
    """What :func:`edit_metrics` measures beside success: ``lpips`` (``(x, y) -> (N,)``, e.g. ``profile.lpips``),
    ``clip_loss`` (a :class:`asyrp_lib.core.clip_loss.DirectionalCLIPLoss`, for S_dir); what counts as kept:
    ``others`` (the attributes that must be kept; default all but the edited one), ``source_attrs`` (ground truth of
    the sources, e.g. ``SourceFaces.attrs``, instead of the oracle's reading of them), ``face_threshold`` (the
    oracle's face score an edit needs); and ``batch_size`` (images per LPIPS / CLIP batch), ``per_image`` (also one
    dict per face)."""

    lpips: object = None
    clip_loss: object = None
    others: Sequence[str] | None = None
    source_attrs: Sequence[dict] | None = None
    face_threshold: float = 0.5
    batch_size: int = 64
    per_image: bool = False


@torch.no_grad()
def edit_metrics(source_images: torch.Tensor, edited_images: torch.Tensor, *, attribute: str, target_value: str,
                 oracle, options: MetricOptions | None = None, **keywords) -> dict:
    """How well ``edited_images`` edit ``source_images`` to ``attribute = target_value`` (see the module docstring).

    ``oracle``: has ``predict(images) -> list[dict]``; ``options``: a :class:`MetricOptions`, whose fields may also
    be given by name (``lpips=profile.lpips``, ``clip_loss=…``, ``others=[…]``, ``source_attrs=…``, ``per_image=True``).
    Edited images are clamped to [-1, 1]. Returns ``n``, ``success``, ``others_kept``, ``kept_by_attribute``,
    ``changes`` (for each other attribute, how often it went from which value to which: ``{"skin":
    {"dark → medium": 9}}``, so a shortfall in ``others_kept`` says what the edit does instead), ``lpips``,
    ``s_dir`` (None without the metric), ``face_rate`` and ``source_success`` (the share of sources already
    reading the target value: should be 0). ``per_image``: also ``images``, one dict per face with the oracle's
    label of ``attribute`` on the source and the edit (``before``, ``after``), ``hit`` and the other attributes
    that changed (``changed``), for figures.
    """
    o = grouped_options("edit_metrics", keywords, {"options": (MetricOptions, options)})["options"]
    others = _checked_edit_inputs(source_images, edited_images, attribute, target_value, o.others, o.source_attrs,
                                  oracle)
    n = source_images.shape[0]
    source = source_images.float().clamp(-1, 1)
    edited = edited_images.float().clamp(-1, 1)
    pred_edit = list(oracle.predict(edited))
    pred_source = list(oracle.predict(source))
    if len(pred_edit) != n or len(pred_source) != n:
        raise ValueError(f"oracle: predict returned {len(pred_edit)} / {len(pred_source)} dicts for {n} images")
    refs = pred_source if o.source_attrs is None else list(o.source_attrs)

    is_face = [p["face"] >= o.face_threshold for p in pred_edit]
    hit = [f and label_of(p, attribute) == target_value and (attribute != "hair_color" or p["hair"] != "none")
           for p, f in zip(pred_edit, is_face)]
    kept = [attributes_kept(r, p, others) for r, p in zip(refs, pred_edit)]
    by_attr, changes = _kept_and_changes(refs, pred_edit, kept, others)
    out = {
        "n": n,
        "success": sum(hit) / n,
        "others_kept": sum(all(k.values()) for k in kept) / n,
        "kept_by_attribute": by_attr,
        "changes": changes,
        "lpips": None,
        "s_dir": None,
        "face_rate": sum(is_face) / n,
        "source_success": sum(label_of(p, attribute) == target_value for p in pred_source) / n,
    }
    if o.per_image:
        out["images"] = [{"before": label_of(ps, attribute), "after": label_of(p, attribute), "hit": h,
                          "changed": sorted(a for a, ok in k.items() if not ok)}
                         for ps, p, h, k in zip(pred_source, pred_edit, hit, kept)]
    if o.lpips is not None:
        out["lpips"] = _batched_mean(o.lpips, o.lpips, source, edited, o.batch_size)
    if o.clip_loss is not None:  # S_dir takes (edited, source)
        out["s_dir"] = _batched_mean(o.clip_loss.similarity, o.clip_loss, edited, source, o.batch_size)
    return out


def _kept_and_changes(refs, pred_edit, kept, others) -> tuple[dict, dict]:
    """For each other attribute: the share of faces that kept it, and how often it moved from which value to
    which."""
    by_attr, changes = {}, {}
    for a in others:
        vals = [k[a] for k in kept if a in k]
        by_attr[a] = sum(vals) / len(vals) if vals else None
        moves = Counter(f"{label_of(r, a)} → {label_of(p, a)}" for r, p, k in zip(refs, pred_edit, kept)
                        if a in k and not k[a])
        changes[a] = dict(sorted(moves.items(), key=lambda kv: (-kv[1], kv[0])))
    return by_attr, changes


def _batched_mean(fn, module, a: torch.Tensor, b: torch.Tensor, batch_size: int) -> float:
    """Mean of ``fn(a_batch, b_batch) -> (B,)`` over batches, on ``module``'s device."""
    dev = _device_of(module, a.device)
    vals = [fn(a[i:i + batch_size].to(dev), b[i:i + batch_size].to(dev)).float().cpu()
            for i in range(0, a.shape[0], batch_size)]
    return float(torch.cat(vals).mean())


def _checked_edit_inputs(source_images, edited_images, attribute, target_value, others, source_attrs,
                         oracle) -> list[str]:
    """:func:`edit_metrics`' argument checks; returns the attributes that must be kept."""
    check_value(attribute, target_value, "target_value")
    for name, x in (("source_images", source_images), ("edited_images", edited_images)):
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != 3 or x.shape[0] == 0:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{name}: expected a non-empty tensor (N, 3, H, W) in [-1, 1], got {shape}")
    if source_images.shape != edited_images.shape:
        raise ValueError(f"edited_images: expected the shape of source_images {tuple(source_images.shape)}, "
                         f"got {tuple(edited_images.shape)}")
    n = source_images.shape[0]
    if others is None:
        others = [a for a in tw.ATTRIBUTES if a != attribute]
    else:
        others = list(others)
        bad = [a for a in others if a not in tw.ATTRIBUTES or a == attribute]
        if bad:
            raise ValueError(f"others: expected attribute names other than {attribute!r} from "
                             f"{', '.join(tw.ATTRIBUTES)}, got {bad}")
    if source_attrs is not None and len(source_attrs) != n:
        raise ValueError(f"source_attrs: expected {n} attribute dicts (one per source image), got {len(source_attrs)}")
    if not hasattr(oracle, "predict"):
        raise ValueError(f"oracle: expected an object with predict(images) -> list[dict], got {type(oracle).__name__}")
    return others


def _device_of(module, default):
    if isinstance(module, torch.nn.Module):
        p = next(module.parameters(), None)
        if p is not None:
            return p.device
        b = next(module.buffers(), None)
        if b is not None:
            return b.device
    return default
