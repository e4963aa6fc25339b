r"""Every h-space editing method on the same held-out faces, measured by the toy world's oracle.

The methods (``METHODS``; each edits a face's h-space and is measured with the same ruler):

==========================  =============================================================  ====================
method                      Δ it adds                                                      needs
==========================  =============================================================  ====================
Asyrp (f_t)                 Δh_t = f_t(h_t), trained with the directional CLIP loss        text (two prompts)
global Δh                   one Δh for every face and step, optimised with the same loss   text (two prompts)
ε-shift                     one Δε in P_t and D_t, optimised with the same loss (naive)    text (two prompts)
PCA of h                    Δh = c s v, v a principal component of h_{t_m}                 nothing (+ oracle to
                                                                                           name it)
Jacobian (∂P_t/∂h)          Δh = c s v, v a top right singular vector of ∂P_t/∂h           nothing (+ naming)
pullback (∂h/∂x_t)          Δx_{t_m} = c s v, v a top right singular vector of ∂h/∂x_t     nothing (+ naming)
boundary (CLIP labels)      Δh = c d n, n the normal of a linear classifier on h_{t_m}     CLIP zero-shot labels
boundary (oracle labels)    the same with the oracle's labels: the upper bound             true labels
content injection           h_t → slerp(h_t, h_t^content; γ)                                a reference image
==========================  =============================================================  ====================

(s: the standard deviation over faces of the projection on v; c: the strength.) The unsupervised directions are
*named* by the oracle on development faces (:func:`match_candidates`): each candidate direction, sign and
strength edits them, and the one that best reaches the target value while keeping the rest is taken. A
boundary's strength c is chosen by the same rule on the same faces (:func:`choose_strength`). Every Δh
edit runs through the asymmetric step of eq. (4/5) on [T, t_edit] with η = 0 throughout (deterministic), so
the methods differ by their Δ alone.

:func:`measure` turns a method's edits at several strengths into one row: the metrics of
:func:`asyrp_lib.toy.evaluate.edit_metrics` at the chosen strength (success, others kept, LPIPS, face rate), the
*leakage* (for each other attribute, the share of faces on which it changed), and the strength → success curve.
:func:`leakage_matrix`, :func:`results_table`, :func:`verdict`, :func:`plot_leakage` and :func:`plot_curves`
read the rows back (for the results file of ``scripts/compare_hspace_methods.py`` and notebook 10).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ..toy import evaluate as ev
from ..toy.toyattributes import ATTRIBUTES

__all__ = ["METHODS", "TARGETS", "NAMING_STRENGTHS", "BOUNDARY_STRENGTHS", "Bench", "candidates", "MethodInfo",
           "measure", "leakage", "match_candidates", "choose_strength", "leakage_matrix", "results_table", "verdict",
           "best_at_kept", "plot_leakage", "plot_curves"]


@dataclass(frozen=True)
class MethodInfo:
    paper: str
    needs: str
    unit: str  # what strength 1 means


METHODS: dict[str, MethodInfo] = {
    "Asyrp (f_t)": MethodInfo("Kwon et al., ICLR 2023", "text: source and target prompts", "the trained f_t"),
    "global Δh": MethodInfo("Kwon et al., ICLR 2023 (ablation)", "text: source and target prompts",
                            "the optimised Δh"),
    "ε-shift": MethodInfo("the naive edit (notebook 04)", "text: source and target prompts", "the optimised Δε"),
    "PCA of h": MethodInfo("Haas et al., 2024", "no labels; the oracle names the direction",
                           "the chosen multiple of the std along v"),
    "Jacobian ∂P_t/∂h": MethodInfo("Haas et al., 2024", "no labels; the oracle names the direction",
                                   "the chosen multiple of the std along v"),
    "pullback ∂h/∂x_t": MethodInfo("Park et al., NeurIPS 2023", "no labels; the oracle names the direction",
                                   "the chosen multiple of the std of x_t along v"),
    "boundary (CLIP labels)": MethodInfo("Zhu et al., NeurIPS 2023", "labels: CLIP zero-shot prompts",
                                         "the distance between the class means (the multiple chosen on "
                                         "development faces)"),
    "boundary (oracle labels)": MethodInfo("Zhu et al., NeurIPS 2023", "labels: true (upper bound)",
                                           "the distance between the class means (the multiple chosen on "
                                           "development faces)"),
    "content injection": MethodInfo("Jeong et al., WACV 2024", "a reference image showing the target",
                                    "slerp ratio γ = 0.5"),
}

#: The attributes compared: name → (attribute, target value, source prompt, target prompt, CLIP zero-shot prompt,
#: shipped direction).
TARGETS = {
    "smile": ("smile", "smiling", "face", "smiling face", "a smiling face", "smiling"),
    "glasses": ("glasses", "yes", "face", "face with glasses", "a face with glasses", "glasses"),
    "eyes": ("eyes", "closed", "face", "face with closed eyes", "a face with closed eyes", "closed_eyes"),
    "hair colour": ("hair_color", "red", "face", "face with red hair", "a face with red hair", "red_hair"),
}


def leakage(metrics: dict) -> dict[str, float | None]:
    """For each other attribute, the share of faces on which it changed (1 − ``kept_by_attribute``)."""
    return {a: (None if k is None else 1.0 - k) for a, k in metrics["kept_by_attribute"].items()}


_KEEP = ("n", "success", "others_kept", "lpips", "face_rate", "source_success", "changes")


def measure(source: torch.Tensor, edits: dict[float, torch.Tensor], *, attribute: str, target_value: str, oracle,
            strength: float, lpips=None, source_attrs: Sequence[dict] | None = None) -> dict:
    """One method's row: :func:`asyrp_lib.toy.evaluate.edit_metrics` of the edit at ``strength`` (a key of ``edits``:
    strength → edited images of the first rows of ``source``), its :func:`leakage`, and the curve
    ``[{"strength", "success", "others_kept", "n"}, …]`` over every strength in ``edits`` (by increasing strength;
    a curve point may use fewer faces than the table row)."""
    strength = float(strength)
    if strength not in {float(s) for s in edits}:
        raise ValueError(f"strength: expected one of the edited strengths {sorted(edits)}, got {strength}")
    curve = []
    row = None
    for s in sorted(edits, key=float):
        x = edits[s]
        n = x.shape[0]
        attrs = None if source_attrs is None else list(source_attrs)[:n]
        m = ev.edit_metrics(source[:n], x, attribute=attribute, target_value=target_value, oracle=oracle,
                            lpips=lpips if float(s) == strength else None, source_attrs=attrs)
        curve.append({"strength": float(s), "success": m["success"], "others_kept": m["others_kept"], "n": n})
        if float(s) == strength:
            row = {k: m[k] for k in _KEEP}
            row["leakage"] = leakage(m)
    row["strength"] = strength
    row["curve"] = curve
    return row


def match_candidates(oracle, source: torch.Tensor, candidates: dict[str, torch.Tensor],
                     targets: Sequence[tuple[str, str]], min_faces: int = 1) -> dict[str, dict]:
    """Name unsupervised edits with the oracle: for each ``(attribute, value)`` of ``targets``, the candidate
    (name → edited ``source``) with the highest success × others kept on the faces that did not read the value
    before (``best`` None where fewer than ``min_faces`` faces lack it). Returns ``"attribute=value"`` → ``{"best", "score", "success", "others_kept", "n", "scores"}``."""
    preds = oracle.predict(source.float().clamp(-1, 1))
    out = {}
    for attribute, value in targets:
        keep = [i for i, p in enumerate(preds) if ev.label_of(p, attribute) != value
                and not (attribute == "hair_color" and p["hair"] == "none")]
        if len(keep) < min_faces:  # nothing to name it on: no best candidate
            out[f"{attribute}={value}"] = {"best": None, "score": None, "success": None, "others_kept": None,
                                           "n": len(keep), "scores": {}}
            continue
        idx = torch.tensor(keep)
        scores = {}
        for name, x in candidates.items():
            m = ev.edit_metrics(source[idx], x[idx], attribute=attribute, target_value=value, oracle=oracle)
            scores[name] = (m["success"] * m["others_kept"], m["success"], m["others_kept"])
        best = max(scores, key=lambda k: (scores[k][0], scores[k][1]))
        out[f"{attribute}={value}"] = {"best": best, "score": scores[best][0], "success": scores[best][1],
                                       "others_kept": scores[best][2], "n": len(keep),
                                       "scores": {k: v[0] for k, v in scores.items()}}
    return out


def choose_strength(oracle, source: torch.Tensor, edits: dict[float, torch.Tensor], attribute: str,
                    value: str) -> dict:
    """The strength of a method with a known direction, chosen on development faces by the rule that names the
    unsupervised directions (:func:`match_candidates`): of ``edits`` (strength → edited ``source``), the strength
    whose edits best reach ``attribute = value`` while keeping the rest (success × others kept on the faces that
    lacked the value; ties go to the weaker strength). Returns ``{"strength", "score", "success", "others_kept",
    "n", "scores": {strength: score}}`` (``strength`` None where no face lacked the value)."""
    by_name = {f"×{float(s):g}": float(s) for s in sorted(edits, key=float)}
    m = match_candidates(oracle, source, {k: edits[s] for k, s in by_name.items()}, [(attribute, value)])
    m = m[f"{attribute}={value}"]
    return {"strength": None if m["best"] is None else by_name[m["best"]], "score": m["score"],
            "success": m["success"], "others_kept": m["others_kept"], "n": m["n"],
            "scores": {by_name[k]: v for k, v in m["scores"].items()}}


# --------------------------------------------------------------------------------------------
# Reading the results
# --------------------------------------------------------------------------------------------
def leakage_matrix(rows: dict[str, dict[str, dict]], method: str) -> tuple[list[str], list[str], torch.Tensor]:
    """(edited attributes, all attributes, matrix): entry [i, j] is how often attribute j changed when
    ``method`` edited attribute i (NaN on the diagonal, where nothing is to be kept, and where not measured).
    ``rows``: edited attribute name → method → row (:func:`measure`)."""
    names = [n for n in rows if method in rows[n]]
    cols = list(ATTRIBUTES)
    mat = torch.full((len(names), len(cols)), float("nan"))
    for i, n in enumerate(names):
        leak = rows[n][method].get("leakage", {})
        for j, a in enumerate(cols):
            v = leak.get(a)
            if v is not None:
                mat[i, j] = v
    return names, cols, mat


def best_at_kept(rows: dict[str, dict], bar: float = 0.75) -> list[tuple[str, dict]]:
    """The rows of one attribute (method → row) whose others kept is ≥ ``bar``, by decreasing success."""
    ok = [(m, r) for m, r in rows.items() if r.get("others_kept") is not None and r["others_kept"] >= bar - 1e-9
          and m != "reconstruction"]
    return sorted(ok, key=lambda mr: (-mr[1]["success"], -mr[1]["others_kept"]))


def family(method: str) -> str:
    """The method a row belongs to, its variant left out: "boundary (CLIP labels)" → "boundary"."""
    return method.split(" (")[0]


def verdict(name: str, rows: dict[str, dict], bar: float = 0.75) -> str:
    """One sentence: which method edits ``name`` best among those that keep the other attributes on at least
    ``bar`` of the faces, and by how much it beats the next *other* method (variants of the winner, such as the
    same boundary from other labels, are named apart)."""
    ok = best_at_kept(rows, bar)
    if not any(m != "reconstruction" for m in rows):
        return f"{name}: no method measured yet."
    if not ok:
        best = max((r["success"], m) for m, r in rows.items() if m != "reconstruction")
        return (f"{name}: no method keeps the other attributes on {bar:.0%} of the faces; the most successful is "
                f"{best[1]} (success {best[0]:.2f}).")
    (m1, r1), rest = ok[0], ok[1:]
    text = (f"{name}: at others kept ≥ {bar:.2f}, **{m1}** is best (success {r1['success']:.2f}, others kept "
            f"{r1['others_kept']:.2f})")
    others = [(m, r) for m, r in rest if family(m) != family(m1)]
    variants = [(m, r) for m, r in rest if family(m) == family(m1)]
    if others:
        m2, r2 = others[0]
        text += f", {(r1['success'] - r2['success']) * 100:+.0f} points over {m2} ({r2['success']:.2f})"
    else:
        text += "; no other method keeps them that well"
    if variants:
        text += "; " + ", ".join(f"{m} {r['success']:.2f}" for m, r in variants)
    return text + "."


_COLS = (("success", "success", "{:.2f}"), ("others_kept", "others kept", "{:.2f}"), ("lpips", "LPIPS", "{:.3f}"),
         ("face_rate", "face rate", "{:.2f}"), ("strength", "strength", "{:g}"),
         ("fit_seconds", "fit (s)", "{:.0f}"), ("edit_seconds_per_image", "edit (s/img)", "{:.2f}"))


def results_table(rows: dict[str, dict]) -> str:
    """A markdown table of one attribute's rows (method → row), with what each method needs."""
    lines = ["| method | needs | n | " + " | ".join(c[1] for c in _COLS) + " |",
             "|---|---|---:|" + "---:|" * len(_COLS)]
    for m, r in rows.items():
        needs = METHODS[m].needs if m in METHODS else "–"
        cells = [("–" if r.get(k) is None else f.format(r[k])) for k, _, f in _COLS]
        lines.append(f"| {m} | {needs} | {r.get('n', '–')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_leakage(rows: dict[str, dict[str, dict]], methods: Sequence[str] | None = None):
    """One heat map per method: rows the edited attributes, columns every attribute, colour the share of faces on
    which that attribute changed. Returns the figure."""
    import matplotlib.pyplot as plt

    methods = list(methods or [m for m in METHODS if any(m in r for r in rows.values())])
    ncol = min(3, len(methods))
    nrow = (len(methods) + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 2.6 * nrow), squeeze=False)
    for ax, m in zip(axes.flat, methods):
        names, cols, mat = leakage_matrix(rows, m)
        ax.imshow(mat.numpy(), vmin=0, vmax=1, cmap="Reds", aspect="auto")
        ax.set_xticks(range(len(cols)), [c.replace("_", " ") for c in cols], rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        for i in range(mat.shape[0]):
            for j in range(mat.shape[1]):
                v = float(mat[i, j])
                if v == v:
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6,
                            color="white" if v > 0.5 else "black")
        ax.set_title(m, fontsize=9)
    for ax in list(axes.flat)[len(methods):]:
        ax.axis("off")
    fig.suptitle("Leakage: share of faces on which each other attribute changed", fontsize=10)
    fig.tight_layout()
    return fig


def plot_curves(rows: dict[str, dict[str, dict]]):
    """Success against strength (relative to each method's chosen strength), one panel per edited attribute."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(rows), figsize=(3.6 * len(rows), 3.0), squeeze=False)
    for ax, (name, by_method) in zip(axes[0], rows.items()):
        for m, r in by_method.items():
            curve = r.get("curve") or []
            if len(curve) < 2 or not r.get("strength"):
                continue
            xs = [p["strength"] / r["strength"] for p in curve]
            ax.plot(xs, [p["success"] for p in curve], marker="o", label=m)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("strength / chosen strength")
        ax.set_ylim(-0.03, 1.03)
        ax.set_title(name, fontsize=9)
    axes[0][0].set_ylabel("success")
    handles, labels = axes[0][0].get_legend_handles_labels()
    for ax in axes[0][1:]:
        h, l = ax.get_legend_handles_labels()
        for hh, ll in zip(h, l):
            if ll not in labels:
                handles.append(hh)
                labels.append(ll)
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# Making the edits: every method behind the same editor (one inversion per face, cached)
# --------------------------------------------------------------------------------------------
class Bench:
    """Fits and applies every method of :data:`METHODS` on one profile.

    ``t_edit``: the end of the editing interval of every Δh/Δε edit (the shipped directions' 300 in the toy
    profile); ``cache_dir``: keep the inversions on disk there; ``t_m``: the "mixing" timestep where h is read for PCA, the boundary and the Jacobians, and where
    the pullback edit moves x_t. Every process runs with η = 0, so an edit is a function of the face alone.
    """

    def __init__(self, profile, oracle, *, t_edit: int = 300, t_m: int = 500, n_steps: int | None = None,
                 progress: bool = False, cache_dir=None):
        from ..core.pipeline import AsyrpEditor

        self.profile, self.oracle, self.t_edit, self.t_m = profile, oracle, int(t_edit), int(t_m)
        self.editor = AsyrpEditor(profile, n_steps=n_steps, t_edit=self.t_edit, t_boost=0, progress=progress,
                                  cache_dir=cache_dir)
        self.hs = self.editor.hspace
        self.progress = progress

    @property
    def timesteps(self) -> list[int]:
        return self.editor.timesteps

    def _t_m_step(self) -> int:
        return next(s for s in self.timesteps if s <= self.t_m)

    # -- plain Δh edits (Asyrp, global Δh, PCA, Jacobian, boundary) ------------------------
    def edit_h(self, images: torch.Tensor, copies: Sequence) -> torch.Tensor:
        """Each copy (directions for the editor, or a Δh tensor of h's shape) on ``images``: (K, N, 3, S, S)."""
        from .directions import run_copies
        from ..core.process import DeltaH

        specs = [DeltaH(c) if isinstance(c, torch.Tensor) else c for c in copies]
        return run_copies(self.editor, images, specs, t_edit=self.t_edit, t_boost=0, eta_boost=0.0).images

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        return self.edit_h(images, [None])[0]

    # -- the optimised baselines -------------------------------------------------------------
    def train_delta_h(self, images, source: str, target: str, epochs: int = 2) -> torch.Tensor:
        from ..core.editing import optimize_global_delta_h

        res = optimize_global_delta_h(self.profile, images, source, target, t_edit=self.t_edit,
                                      n_steps=self.editor.n_steps, epochs=epochs, progress=self.progress)
        return res.delta_h.detach().reshape(self.editor.h_shape)

    def train_eps(self, images, source: str, target: str, epochs: int = 2) -> torch.Tensor:
        from ..core.naive import epsilon_shift_edit

        res = epsilon_shift_edit(self.profile, images, source, target, t_edit=self.t_edit,
                                 n_steps=self.editor.n_steps, epochs=epochs, progress=self.progress)
        return res.delta_eps.detach()

    def edit_eps(self, images, delta_eps: torch.Tensor, strengths: Sequence[float]) -> torch.Tensor:
        """The ε-shift in P_t and D_t (the naive, symmetric edit) at each strength: (K, N, 3, S, S)."""
        from ..core.naive import apply_delta_eps

        x_T = self.editor.invert(images)
        return torch.stack([apply_delta_eps(self.profile, x_T, delta_eps.reshape(x_T.shape[1:]), t_edit=self.t_edit,
                                            n_steps=self.editor.n_steps, strength=float(s), progress=False)
                            .images.clamp(-1, 1) for s in strengths])

    # -- unsupervised directions -------------------------------------------------------------
    def collect_h(self, images: torch.Tensor, seed: int = 0) -> torch.Tensor:
        from .directions import collect_h

        return collect_h(self.hs, images.to(self.hs.device), self._t_m_step(), self.profile.schedule, seed=seed)

    def noisy(self, images: torch.Tensor, seed: int = 0) -> torch.Tensor:
        """x_{t_m} = √ᾱ x_0 + √(1−ᾱ) z of ``images`` (seeded z), as :func:`asyrp_lib.beyond.directions.collect_h` draws it."""
        g = torch.Generator().manual_seed(int(seed))
        a = self.profile.schedule.alpha(self._t_m_step())
        z = torch.randn(images.shape, generator=g).to(images)
        return a.sqrt().to(images) * images + (1 - a).sqrt().to(images) * z

    @staticmethod
    def projection_std(values: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
        """Std over rows of ``values`` (N, …) of their projection on each unit direction (k, …): (k,)."""
        return (values.flatten(1).double() @ directions.flatten(1).double().T).std(0).float()

    def pca(self, h: torch.Tensor, k: int = 3):
        from .directions import pca_directions

        p = pca_directions(h, k)
        return p.components, p.std

    def jacobian(self, images: torch.Tensor, h: torch.Tensor, k: int = 3, iters: int = 3, seed: int = 0):
        from .directions import jacobian_directions

        jd = jacobian_directions(self.hs, self.noisy(images, seed).to(self.hs.device), self._t_m_step(),
                                 self.profile.schedule, k, iters=iters, oversample=1, seed=seed)
        v = jd.directions.cpu()
        return v, self.projection_std(h, v)

    def pullback(self, images: torch.Tensor, k: int = 3, iters: int = 3, seed: int = 0):
        from .pullback import pullback_basis

        x_t = self.noisy(images, seed)
        basis = pullback_basis(self.hs, x_t, self._t_m_step(), k, iters=iters, oversample=1, seed=seed)
        v = basis.v.cpu()
        return v, self.projection_std(x_t.cpu(), v)

    def edit_pullback(self, images: torch.Tensor, deltas: Sequence[torch.Tensor]) -> torch.Tensor:
        """x_{t_m} + Δx for each Δx of ``deltas`` (one image's shape), then plain DDIM: (K, N, 3, S, S)."""
        from .pullback import edit_x_t, latent_at

        x_T = self.editor.invert(images)
        x_t, index = latent_at(self.hs, x_T, self.timesteps, self.profile.schedule, self._t_m_step())
        return edit_x_t(self.hs, x_t, index, self.timesteps, self.profile.schedule,
                        [d.unsqueeze(0) for d in deltas]).clamp(-1, 1)

    # -- the boundary ------------------------------------------------------------------------
    def boundary(self, h: torch.Tensor, images: torch.Tensor, attribute: str, value: str, *, labels: str,
                 prompt: str | None = None):
        """The boundary for ``attribute = value`` from h (of ``images``) with ``labels`` "clip" (zero-shot with the
        profile's prompt group of the attribute, ``prompt`` the target's) or "oracle"."""
        from .boundary import boundary_direction, clip_labels, oracle_labels

        truth = oracle_labels(self.oracle, images, attribute, value)
        if labels == "oracle":
            y = truth
        elif labels == "clip":
            group = dict(self.profile.keep_prompts)[attribute]
            y = clip_labels(self.profile.clip, images, group, prompt)
        else:
            raise ValueError(f"labels: expected 'clip' or 'oracle', got {labels!r}")
        return boundary_direction(h, y, self._t_m_step(), truth=truth)

    def boundary_strength(self, boundary, images: torch.Tensor, attribute: str, value: str,
                          strengths: Sequence[float] = None) -> dict:
        """The strength c of a boundary's edit Δh = c d n, chosen on the development faces ``images`` among
        ``strengths`` (default :data:`BOUNDARY_STRENGTHS`) by :func:`choose_strength`."""
        strengths = [float(c) for c in (BOUNDARY_STRENGTHS if strengths is None else strengths)]
        edits = self.edit_h(images, [boundary.delta_h(c).to(self.profile.device) for c in strengths])
        return choose_strength(self.oracle, images, dict(zip(strengths, edits)), attribute, value)

    # -- content injection -------------------------------------------------------------------
    def inject(self, images: torch.Tensor, contents: torch.Tensor, gammas: Sequence[float],
               blend=None) -> torch.Tensor:
        """Each image with the h of the content of the same row slerped in with each ratio γ: (K, N, 3, S, S).
        ``blend``: the interpolation (default :func:`asyrp_lib.beyond.injection.slerp`)."""
        from .injection import inject

        x_T, x_c = self.editor.invert(images), self.editor.invert(contents)
        return torch.stack([inject(self.hs, x_T, x_c, self.timesteps, self.profile.schedule, gamma=float(g),
                                   t_edit=self.t_edit, blend=blend).clamp(-1, 1) for g in gammas])


#: The strengths (in stds along the direction) at which each unsupervised direction is tried when it is named.
NAMING_STRENGTHS = {"PCA of h": (1.0, 3.0), "Jacobian ∂P_t/∂h": (1.0, 3.0), "pullback ∂h/∂x_t": (2.0, 6.0)}

#: The strengths (in class-mean distances along the normal) among which a boundary's is chosen on development
#: faces (:meth:`Bench.boundary_strength`).
BOUNDARY_STRENGTHS = (1.0, 2.0, 4.0, 8.0)


def candidates(directions: torch.Tensor, stds: torch.Tensor, strengths: Sequence[float]) -> dict[str, torch.Tensor]:
    """Every direction with both signs at each strength (in units of its std): name ("v2−×3") → Δ."""
    out = {}
    for i, (v, s) in enumerate(zip(directions, stds)):
        for sign, mark in ((1.0, "+"), (-1.0, "−")):
            for c in strengths:
                out[f"v{i + 1}{mark}×{c:g}"] = sign * float(c) * float(s) * v
    return out
