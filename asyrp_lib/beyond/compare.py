"""The editing methods of the course side by side on the same toy faces, measured by the oracle.

``compare_methods`` runs the reconstruction (the floor), x_T optimisation, the ε-shift, the symmetric and
asymmetric global Δh, and Asyrp with f_t on the same faces and measures each with
:func:`asyrp_lib.toy.evaluate.edit_metrics`; ``comparison_table`` writes the rows as markdown and
``comparison_verdict`` checks the paper's claim on them.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from .._utils import grouped_options
from ..toy.evaluate import SourceFaces, check_value, edit_metrics

__all__ = ["compare_methods", "EditGoal", "MethodSettings", "comparison_table", "comparison_verdict", "METHODS"]


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
    from ..core import ddim

    t0 = time.perf_counter()
    rec = ddim.sample(st.profile.unet, st.x_T_test, st.ts, st.profile.schedule, progress=st.progress, clip_sample=False)
    yield "reconstruction", rec, st.x_test, dict(train_seconds=0.0, edit_seconds_per_image=(
        st.invert_seconds + time.perf_counter() - t0) / st.n_test)


def _x_T_optimisation(st: _Setting, kw):
    from ..core import naive

    res = naive.optimize_xT(st.profile, st.x_test, st.source, st.target, clip_loss=st.clip_loss,
                            progress=st.progress, **{"n_steps": st.n_steps, **(kw or {})})
    yield "x_T optimisation", res.images, st.x_test, dict(train_seconds=0.0, edit_seconds_per_image=res.seconds /
                                                          st.n_test, losses=res.losses)


def _eps_shift(st: _Setting, kw):
    from ..core import naive

    res = naive.epsilon_shift_edit(st.profile, st.x_train, st.source, st.target, t_edit=st.t_edit, n_steps=st.n_steps,
                                   clip_loss=st.clip_loss, progress=st.progress, **(kw or {}))
    out = naive.apply_delta_eps(st.profile, st.x_T_test, res.delta_eps, t_edit=st.t_edit, n_steps=st.n_steps,
                                progress=st.progress)
    yield "ε-shift", out.images, st.x_test, dict(train_seconds=res.seconds, losses=res.losses,
                                                 edit_seconds_per_image=(st.invert_seconds + out.seconds) / st.n_test)


def _global_delta_h(st: _Setting, kw, names):
    from ..core import editing

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

    from ..core.delta_net import DeltaNet
    from ..core.pipeline import AsyrpEditor
    from ..core.train import TrainConfig, train_direction

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


@dataclass(frozen=True)
class EditGoal:
    """What the compared methods edit towards: the oracle's ``attribute`` = ``target_value`` (how success is
    measured) and the prompt pair ``source`` → ``target`` (what the methods are told)."""

    attribute: str = "smile"
    target_value: str = "smiling"
    source: str = "face"
    target: str = "smiling face"


@dataclass(frozen=True)
class MethodSettings:
    """How :func:`compare_methods` runs the methods: ``t_edit`` (required) and ``n_steps`` (default the
    profile's) shared by all; ``methods`` (names from :data:`METHODS`); each method's own keyword arguments:
    ``delta_h`` (of :func:`asyrp_lib.core.editing.optimize_global_delta_h`), ``eps_shift`` (of
    :func:`asyrp_lib.core.naive.epsilon_shift_edit`), ``x_T`` (of :func:`asyrp_lib.core.naive.optimize_xT`), ``f_t``
    (TrainConfig fields), or a trained ``direction`` (folder or DeltaNet) instead of training f_t."""

    t_edit: int | None = None
    n_steps: int | None = None
    methods: Sequence[str] = METHODS
    delta_h: dict | None = None
    eps_shift: dict | None = None
    x_T: dict | None = None
    direction: object = None
    f_t: dict | None = None


def compare_methods(profile, oracle, *, train: SourceFaces, test: SourceFaces, goal: EditGoal | None = None,
                    settings: MethodSettings | None = None, progress: bool = True, **keywords) -> dict[str, dict]:
    """Edit the ``test`` faces with each method and measure them with :func:`edit_metrics`.

    ``goal`` (:class:`EditGoal`: attribute, target_value, source, target) and ``settings`` (:class:`MethodSettings`:
    t_edit, n_steps, methods and each method's keyword arguments); each field of either may also be given by name
    (``t_edit=300, eps_shift={"epochs": 2}``).
    The global Δh (``delta_h``: keyword arguments of :func:`asyrp_lib.core.editing.optimize_global_delta_h`) and Δε
    (``eps_shift``: of :func:`asyrp_lib.core.naive.epsilon_shift_edit`) are optimised on the ``train`` faces and
    applied to the ``test`` faces; "Δh symmetric" applies the same Δh in both P_t and D_t. x_T optimisation
    (``x_T``: of :func:`asyrp_lib.core.naive.optimize_xT`) is per image, so it runs on the test faces themselves.
    "Asyrp (f_t)" edits with a trained ``direction`` (folder or DeltaNet) through eq. (6) at its own t_edit and
    t_boost, or, without one, trains f_t on the ``train`` faces (``f_t``: TrainConfig fields).
    "reconstruction" is invert → sample without an edit (the floor). The other methods use the same ``n_steps``
    DDIM schedule and ``t_edit`` unless their keyword arguments say otherwise. The other attributes are compared
    as the oracle reads them on the source and on the edited image (one ruler for both). Each row also has
    ``train_seconds`` and ``edit_seconds_per_image`` (inversion included); "Δh asymmetric (train faces)"
    measures the Δh on the faces it was optimised on.
    """
    g = grouped_options("compare_methods", keywords, {"goal": (EditGoal, goal), "settings": (MethodSettings, settings)})
    goal, s = g["goal"], g["settings"]
    if s.t_edit is None:
        raise TypeError("compare_methods() missing the keyword argument t_edit (or settings=MethodSettings(t_edit=…))")
    bad = [m for m in s.methods if m not in METHODS]
    if bad:
        raise ValueError(f"methods: expected names from {METHODS}, got {bad}")
    check_value(goal.attribute, goal.target_value, "target_value")
    st = _setting(profile, train, test, goal, s, progress)
    results: dict[str, dict] = {}
    for run in _runs(st, s):
        for name, edited, images, extra in run:
            results[name] = {**edit_metrics(images, edited, attribute=goal.attribute, target_value=goal.target_value,
                                            oracle=oracle, lpips=profile.lpips, clip_loss=st.clip_loss), **extra}
    return results


def _setting(profile, train: SourceFaces, test: SourceFaces, goal: EditGoal, s: MethodSettings,
             progress: bool) -> _Setting:
    """The test faces inverted once on the shared schedule, and what every method shares."""
    from ..core import ddim, editing

    dev = profile.device
    ts = editing.schedule_steps(profile, s.n_steps)
    x_test = test.images.to(dev)
    t0 = time.perf_counter()
    x_T_test = ddim.invert(profile.unet, x_test, ts, profile.schedule, progress=progress,
                           refine=getattr(profile, "invert_refine", 0))
    return _Setting(profile=profile, x_train=train.images.to(dev), x_test=x_test, x_T_test=x_T_test, ts=ts,
                    invert_seconds=time.perf_counter() - t0, source=goal.source, target=goal.target, t_edit=s.t_edit,
                    n_steps=s.n_steps, clip_loss=editing.make_clip_loss(profile, goal.source, goal.target),
                    progress=progress)


def _runs(st: _Setting, s: MethodSettings) -> list:
    """The chosen methods' runs, in the table's order (each yields its rows)."""
    methods = s.methods
    runs = []
    if "reconstruction" in methods:
        runs.append(_reconstruction(st, None))
    if "x_T optimisation" in methods:
        runs.append(_x_T_optimisation(st, s.x_T))
    if "ε-shift" in methods:
        runs.append(_eps_shift(st, s.eps_shift))
    if "Δh symmetric" in methods or "Δh asymmetric" in methods:
        runs.append(_global_delta_h(st, s.delta_h, methods))
    if "Asyrp (f_t)" in methods:
        runs.append(_f_t(st, s.direction, s.f_t))
    return runs
