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
``compare_methods`` runs x_T optimisation, the ε-shift, and the symmetric and asymmetric global Δh on the
same faces and returns rows for ``comparison_table``.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from . import toyworld as tw

__all__ = ["label_of", "label_distribution", "tv_distance", "sample_quality", "edit_metrics", "comparison_table",
           "comparison_verdict",
           "source_faces", "SourceFaces", "compare_methods", "DEV_SEED", "HELDOUT_SEED"]

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


def _check_value(attribute: str, value, name: str) -> str:
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
    _check_value(attribute, value_to_avoid, "value_to_avoid")
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
def _others_kept(ref: dict, edit: dict, others: Sequence[str]) -> dict[str, bool]:
    kept = {}
    for a in others:
        if a == "hair_color":
            if ref["hair"] == "none" or edit["hair"] == "none":
                continue  # invisible on a bald head: not comparable (a change of hair itself counts under "hair")
        kept[a] = label_of(ref, a) == label_of(edit, a)
    return kept


@torch.no_grad()
def edit_metrics(
    source_images: torch.Tensor,
    edited_images: torch.Tensor,
    *,
    attribute: str,
    target_value: str,
    oracle,
    lpips=None,
    clip_loss=None,
    others: Sequence[str] | None = None,
    source_attrs: Sequence[dict] | None = None,
    face_threshold: float = 0.5,
    batch_size: int = 64,
    per_image: bool = False,
) -> dict:
    """How well ``edited_images`` edit ``source_images`` to ``attribute = target_value`` (see the module docstring).

    ``oracle``: has ``predict(images) -> list[dict]``; ``lpips``: ``(x, y) -> (N,)`` (e.g. ``profile.lpips``);
    ``clip_loss``: a :class:`asyrp_lib.clip.DirectionalCLIPLoss` for S_dir; ``others``: the attributes that
    must be kept (default: all but ``attribute``); ``source_attrs``: ground truth of the sources (e.g.
    ``SourceFaces.attrs``) to compare the others with, instead of the oracle's reading of the sources.
    Edited images are clamped to [-1, 1]. Returns ``n``, ``success``, ``others_kept``, ``kept_by_attribute``,
    ``changes`` (for each other attribute, how often it went from which value to which: ``{"skin":
    {"dark → medium": 9}}``, so a shortfall in ``others_kept`` says what the edit does instead), ``lpips``,
    ``s_dir`` (None without the metric), ``face_rate`` and ``source_success`` (the share of sources already
    reading the target value: should be 0). ``per_image``: also ``images``, one dict per face with the oracle's
    label of ``attribute`` on the source and the edit (``before``, ``after``), ``hit`` and the other attributes
    that changed (``changed``), for figures.
    """
    others = _checked_edit_inputs(source_images, edited_images, attribute, target_value, others, source_attrs,
                                  oracle)
    n = source_images.shape[0]
    source = source_images.float().clamp(-1, 1)
    edited = edited_images.float().clamp(-1, 1)
    pred_edit = list(oracle.predict(edited))
    pred_source = list(oracle.predict(source))
    if len(pred_edit) != n or len(pred_source) != n:
        raise ValueError(f"oracle: predict returned {len(pred_edit)} / {len(pred_source)} dicts for {n} images")
    refs = pred_source if source_attrs is None else list(source_attrs)

    is_face = [p["face"] >= face_threshold for p in pred_edit]
    hit = [f and label_of(p, attribute) == target_value and (attribute != "hair_color" or p["hair"] != "none")
           for p, f in zip(pred_edit, is_face)]
    kept = [_others_kept(r, p, others) for r, p in zip(refs, pred_edit)]
    by_attr, changes = {}, {}
    for a in others:
        vals = [k[a] for k in kept if a in k]
        by_attr[a] = sum(vals) / len(vals) if vals else None
        moves = Counter(f"{label_of(r, a)} → {label_of(p, a)}" for r, p, k in zip(refs, pred_edit, kept)
                        if a in k and not k[a])
        changes[a] = dict(sorted(moves.items(), key=lambda kv: (-kv[1], kv[0])))

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
    if per_image:
        out["images"] = [{"before": label_of(ps, attribute), "after": label_of(p, attribute), "hit": h,
                          "changed": sorted(a for a, ok in k.items() if not ok)}
                         for ps, p, h, k in zip(pred_source, pred_edit, hit, kept)]
    if lpips is not None:
        out["lpips"] = _batched_mean(lpips, lpips, source, edited, batch_size)
    if clip_loss is not None:  # S_dir takes (edited, source)
        out["s_dir"] = _batched_mean(clip_loss.similarity, clip_loss, edited, source, batch_size)
    return out


def _batched_mean(fn, module, a: torch.Tensor, b: torch.Tensor, batch_size: int) -> float:
    """Mean of ``fn(a_batch, b_batch) -> (B,)`` over batches, on ``module``'s device."""
    dev = _device_of(module, a.device)
    vals = [fn(a[i:i + batch_size].to(dev), b[i:i + batch_size].to(dev)).float().cpu()
            for i in range(0, a.shape[0], batch_size)]
    return float(torch.cat(vals).mean())


def _checked_edit_inputs(source_images, edited_images, attribute, target_value, others, source_attrs,
                         oracle) -> list[str]:
    """:func:`edit_metrics`' argument checks; returns the attributes that must be kept."""
    _check_value(attribute, target_value, "target_value")
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


_COLUMNS = (("success", "success", "{:.2f}"), ("others_kept", "others kept", "{:.2f}"), ("lpips", "LPIPS", "{:.3f}"),
            ("s_dir", "S_dir", "{:.3f}"), ("face_rate", "face rate", "{:.2f}"),
            ("train_seconds", "train (s)", "{:.1f}"), ("edit_seconds_per_image", "edit (s/img)", "{:.2f}"))


def comparison_verdict(results: dict, bar: float = 0.30) -> str:
    """The paper's claim checked on :func:`compare_methods`' results, in one sentence: for x_T optimisation and the
    ε-shift, does Asyrp's success beat the baseline's by ≥ ``bar`` at equal or better others kept, and by how much."""
    a = results.get("Asyrp (f_t)")
    if a is None:
        return "No Asyrp row: nothing to compare."
    said = []
    for base in ("x_T optimisation", "ε-shift"):
        b = results.get(base)
        if b is None:
            continue
        gain, kept = a["success"] - b["success"], a["others_kept"] - b["others_kept"]
        ok = gain >= bar - 1e-9 and kept >= -1e-9
        said.append(f"against {base}: success {gain * 100:+.0f} points, others kept {kept * 100:+.0f} points — "
                    + ("beats it as the paper claims" if ok else
                       f"**does not** beat it by {bar * 100:.0f} points at equal or better others kept"))
    return "Asyrp (f_t) " + "; ".join(said) + "."


def comparison_table(results: dict[str, dict]) -> str:
    """A markdown table, one row per method: success, others kept, LPIPS, S_dir, face rate and time.

    ``results``: method name → a dict from :func:`edit_metrics`, optionally with ``train_seconds`` (time to
    optimise the direction, once) and ``edit_seconds_per_image``; missing values show as "–".
    """
    if not isinstance(results, dict) or not results:
        raise ValueError("results: expected a non-empty dict of method name -> metrics dict")
    cols = [c for c in _COLUMNS if any(r.get(c[0]) is not None for r in results.values())
            or c[0] in ("success", "others_kept")]
    lines = ["| method | n | " + " | ".join(c[1] for c in cols) + " |",
             "|---|---:|" + "---:|" * len(cols)]
    for name, r in results.items():
        cells = [("–" if r.get(k) is None else fmt.format(r[k])) for k, _, fmt in cols]
        lines.append(f"| {name} | {r.get('n', '–')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# The methods of the course on the same faces
# --------------------------------------------------------------------------------------------
METHODS = ("reconstruction", "x_T optimisation", "ε-shift", "Δh symmetric", "Δh asymmetric", "Asyrp (f_t)")


@dataclass
class _Setting:
    """What every method of :func:`compare_methods` shares."""

    profile: object
    x_train: torch.Tensor
    x_test: torch.Tensor
    x_T_test: torch.Tensor  # the test faces' inversions (the same steps for every method)
    ts: list  # those DDIM steps
    invert_seconds: float
    source: str
    target: str
    t_edit: int
    n_steps: int | None
    clip_loss: object
    progress: bool

    @property
    def n_test(self) -> int:
        return self.x_test.shape[0]


def _reconstruction(st: _Setting, _kw):
    from . import ddim

    t0 = time.perf_counter()
    rec = ddim.sample(st.profile.unet, st.x_T_test, st.ts, st.profile.schedule, progress=st.progress, clip_sample=False)
    yield "reconstruction", rec, st.x_test, dict(train_seconds=0.0, edit_seconds_per_image=(
        st.invert_seconds + time.perf_counter() - t0) / st.n_test)


def _x_T_optimisation(st: _Setting, kw):
    from . import naive

    res = naive.optimize_xT(st.profile, st.x_test, st.source, st.target, clip_loss=st.clip_loss,
                            progress=st.progress, **{"n_steps": st.n_steps, **(kw or {})})
    yield "x_T optimisation", res.images, st.x_test, dict(train_seconds=0.0, edit_seconds_per_image=res.seconds /
                                                          st.n_test, losses=res.losses)


def _eps_shift(st: _Setting, kw):
    from . import naive

    res = naive.epsilon_shift_edit(st.profile, st.x_train, st.source, st.target, t_edit=st.t_edit, n_steps=st.n_steps,
                                   clip_loss=st.clip_loss, progress=st.progress, **(kw or {}))
    out = naive.apply_delta_eps(st.profile, st.x_T_test, res.delta_eps, t_edit=st.t_edit, n_steps=st.n_steps,
                                progress=st.progress)
    yield "ε-shift", out.images, st.x_test, dict(train_seconds=res.seconds, losses=res.losses,
                                                 edit_seconds_per_image=(st.invert_seconds + out.seconds) / st.n_test)


def _global_delta_h(st: _Setting, kw, names):
    from . import editing

    res = editing.optimize_global_delta_h(st.profile, st.x_train, st.source, st.target, t_edit=st.t_edit,
                                          n_steps=st.n_steps, clip_loss=st.clip_loss, progress=st.progress, **(kw or {}))
    for name, asym in (("Δh symmetric", False), ("Δh asymmetric", True)):
        if name in names:
            out = editing.apply_delta_h(st.profile, st.x_T_test, res.delta_h, t_edit=st.t_edit, n_steps=st.n_steps,
                                        asymmetric=asym, progress=st.progress)
            yield name, out.images, st.x_test, dict(train_seconds=res.seconds, losses=res.losses,
                                                    edit_seconds_per_image=(st.invert_seconds + out.seconds) / st.n_test)
    if "Δh asymmetric" in names and res.asymmetric:
        yield "Δh asymmetric (train faces)", res.images, st.x_train, dict(train_seconds=res.seconds,
                                                                          edit_seconds_per_image=None)


def _f_t(st: _Setting, direction, kw):
    """Asyrp with f_t: ``direction`` (a folder or DeltaNet), else one trained here on the train faces (``kw``:
    TrainConfig fields); edited with eq. (6) at the direction's t_edit / t_boost (boosting included)."""
    import tempfile

    from .delta_net import DeltaNet
    from .pipeline import AsyrpEditor
    from .train import TrainConfig, train_direction

    train_seconds = None
    with tempfile.TemporaryDirectory(prefix="asyrp-compare-") as tmp:
        if direction is None:
            cfg = TrainConfig(**{"source": st.source, "target": st.target, "t_edit": st.t_edit, "t_boost": 0,
                                 "n_steps": st.n_steps or st.profile.default_steps, **(kw or {})})
            res = train_direction(st.profile, cfg, tmp, images=st.x_train.cpu(), progress=st.progress,
                                  cache_dir=Path(tmp) / "cache")
            direction, train_seconds = res.delta_net, res.seconds
        meta = direction.metadata if isinstance(direction, DeltaNet) else DeltaNet.read_metadata(direction)
        editor = AsyrpEditor(st.profile, n_steps=meta.get("steps"), progress=st.progress)
        t0 = time.perf_counter()
        out = editor.edit(st.x_test, [(direction, 1.0)], generator=torch.Generator().manual_seed(0),
                          reconstruct=False)
        seconds = time.perf_counter() - t0
    yield "Asyrp (f_t)", out.edited, st.x_test, dict(train_seconds=train_seconds,
                                                     edit_seconds_per_image=seconds / st.n_test,
                                                     t_edit=out.t_edit, t_boost=out.t_boost)


def compare_methods(
    profile,
    oracle,
    *,
    train: SourceFaces,
    test: SourceFaces,
    attribute: str = "smile",
    target_value: str = "smiling",
    source: str = "face",
    target: str = "smiling face",
    t_edit: int,
    n_steps: int | None = None,
    delta_h: dict | None = None,
    eps_shift: dict | None = None,
    x_T: dict | None = None,
    direction=None,
    f_t: dict | None = None,
    methods: Sequence[str] = METHODS,
    progress: bool = True,
) -> dict[str, dict]:
    """Edit the ``test`` faces with each method and measure them with :func:`edit_metrics`.

    The global Δh (``delta_h``: keyword arguments of :func:`asyrp_lib.editing.optimize_global_delta_h`) and Δε
    (``eps_shift``: of :func:`asyrp_lib.naive.epsilon_shift_edit`) are optimised on the ``train`` faces and
    applied to the ``test`` faces; "Δh symmetric" applies the same Δh in both P_t and D_t. x_T optimisation
    (``x_T``: of :func:`asyrp_lib.naive.optimize_xT`) is per image, so it runs on the test faces themselves.
    "Asyrp (f_t)" edits with a trained ``direction`` (folder or DeltaNet) through eq. (6) at its own t_edit and
    t_boost, or, without one, trains f_t on the ``train`` faces (``f_t``: TrainConfig fields).
    "reconstruction" is invert → sample without an edit (the floor). The other methods use the same ``n_steps``
    DDIM schedule and ``t_edit`` unless their keyword arguments say otherwise. The other attributes are compared
    as the oracle reads them on the source and on the edited image (one ruler for both). Each row also has
    ``train_seconds`` and ``edit_seconds_per_image`` (inversion included); "Δh asymmetric (train faces)"
    measures the Δh on the faces it was optimised on.
    """
    from . import ddim, editing

    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ValueError(f"methods: expected names from {METHODS}, got {bad}")
    _check_value(attribute, target_value, "target_value")
    dev = profile.device
    ts = editing.schedule_steps(profile, n_steps)
    x_test = test.images.to(dev)
    t0 = time.perf_counter()
    x_T_test = ddim.invert(profile.unet, x_test, ts, profile.schedule, progress=progress,
                           refine=getattr(profile, "invert_refine", 0))
    st = _Setting(profile=profile, x_train=train.images.to(dev), x_test=x_test, x_T_test=x_T_test, ts=ts,
                  invert_seconds=time.perf_counter() - t0, source=source, target=target, t_edit=t_edit,
                  n_steps=n_steps, clip_loss=editing.make_clip_loss(profile, source, target), progress=progress)
    runs = []
    if "reconstruction" in methods:
        runs.append(_reconstruction(st, None))
    if "x_T optimisation" in methods:
        runs.append(_x_T_optimisation(st, x_T))
    if "ε-shift" in methods:
        runs.append(_eps_shift(st, eps_shift))
    if "Δh symmetric" in methods or "Δh asymmetric" in methods:
        runs.append(_global_delta_h(st, delta_h, methods))
    if "Asyrp (f_t)" in methods:
        runs.append(_f_t(st, direction, f_t))
    results: dict[str, dict] = {}
    for run in runs:
        for name, edited, images, extra in run:
            results[name] = {**edit_metrics(images, edited, attribute=attribute, target_value=target_value,
                                            oracle=oracle, lpips=profile.lpips, clip_loss=st.clip_loss), **extra}
    return results
