r"""What the h-space can do beyond one edit (notebook 09): linearity, composition, homogeneity, robustness,
and directions found without any text (PCA of h_t, singular vectors of the Jacobian ∂P_t/∂h).

Every experiment edits the same faces several ways and compares the results, so the workhorse is
:func:`run_copies`: the faces are inverted once (:meth:`~asyrp_lib.core.pipeline.AsyrpEditor.invert`, cached) and
their x_T repeated once per *copy*, each copy with its own edit, all in one batched run of eq. (6)
(:func:`asyrp_lib.core.process.run_process`). A copy's edit is

- a list of ``(direction, strength)`` pairs — a direction is anything :class:`~asyrp_lib.core.pipeline.AsyrpEditor`
  accepts (a :class:`~asyrp_lib.core.delta_net.DeltaNet`, its folder, a constant Δh tensor, a callable
  ``(h, t) -> Δh``) — combined as Δh_t = Σ_i c_i f_t^i(h_t) (ARCHITECTURE.md §5);
- a :class:`~asyrp_lib.core.process.DeltaH` (also a per-step stack of Δh, one per edit step);
- an :class:`EpsSteps`: a Δε added to ε in the P_t branch, one per edit step (the naive edit of notebook 04);
- ``None``: no edit (the reconstruction).

With ``eta_boost=0`` (the default here) the whole process is deterministic, so copies differ by their edit
alone; with ``eta_boost > 0`` each copy runs on its own with the same noise seed, for the same reason.

================================  ========================================================================
function                          what it measures
================================  ========================================================================
:func:`strength_sweep`            one direction at several strengths c (Δh_t = c f_t(h_t))
:func:`linearity_curve`           an oracle attribute against c: mean ± std over faces, slope, R²
:func:`composition`,              directions added one after the other; what each costs in the
:func:`composition_table`         attributes asked for so far and in the others kept
:func:`homogeneity`,              how alike f_t's Δh_t are over faces, and the mean Δh_t per step
:func:`mean_delta_h`              (one vector for every face, no f_t)
:func:`matched_random_delta_h`,   random edits of matched size: a random Δh with the per-step norm of
:func:`matched_random_delta_eps`  f_t's Δh_t, a random Δε with the per-step norm of the ε change it causes
:func:`collect_h`,                principal components of h_t over many faces at one t
:func:`pca_directions`
:func:`jacobian_directions`       top right singular vectors of J = ∂P_t/∂h (subspace iteration with
                                  ``torch.func`` jvp and vjp; never the full Jacobian)
:func:`direction_effects`,        which attribute a direction moves most, by how much, what else it moves
:func:`effects_table`
================================  ========================================================================

Notation: P_t = (x_t − √(1−ᾱ_t) ε)/√ᾱ_t (``ddim.predicted_x0``), so J_t = ∂P_t/∂h_t = −√((1−ᾱ_t)/ᾱ_t) ∂ε/∂h_t
and the singular vectors of ∂P_t/∂h are those of ∂ε/∂h, which Haas et al. (2024) compute by power iteration;
Park et al. (2023) do the same kind of computation on the encoder's half, the pullback metric of ∂h_t/∂x_t.
The oracle readings (toy world only) use :mod:`asyrp_lib.toy.evaluate`.
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from .._utils import grouped_options
from ..core import ddim
from ..toy import evaluate as ev
from ..core.pipeline import MAX_STRENGTH, AsyrpEditor, check_strength
from ..core.process import DeltaH, EpsShift, Phases, run_process
from ..toy.toyattributes import ATTRIBUTES

__all__ = ["EpsSteps", "StepRecord", "Copies", "run_copies", "Sweep", "strength_sweep", "Curve", "read_attribute",
           "linearity_curve", "composition", "composition_table", "mean_delta_h", "Homogeneity", "homogeneity",
           "matched_random_delta_h", "matched_random_delta_eps", "collect_h", "PCA", "pca_directions",
           "top_singular_vectors", "JacobianDirections", "jacobian_directions", "direction_effects",
           "effects_table", "faces_without"]


# --------------------------------------------------------------------------------------------
# Copies of the same faces, each with its own edit, in one batched run of eq. (6)
# --------------------------------------------------------------------------------------------
#: ε + Δε_i in the P_t branch at edit step i: the Δε edit of :mod:`asyrp_lib.core.process` (one image's shape for
#: every step, or a stack (K, 3, S, S), one per edit step). The name notebook 09 uses.
EpsSteps = EpsShift


@dataclass
class StepRecord:
    """What one copy's edit did at each edit step (rows: faces)."""

    timesteps: list[int]  # the edit steps, from T down to t_edit
    delta_h: torch.Tensor  # (K, N, C, H, W): the Δh_t added to h_t (zeros for a Δε edit)
    eps_change: torch.Tensor  # (K, N): ‖ε(x_t | edit) − ε(x_t)‖ per face, over all pixels and channels


@dataclass
class Copies:
    """The faces edited several ways: ``images[k]`` is copy k (all faces), clamped to [-1, 1]."""

    images: torch.Tensor  # (K, N, 3, S, S)
    source: torch.Tensor  # (N, 3, S, S)
    t_edit: int
    t_boost: int
    records: list | None = None  # one StepRecord per copy (with record=True)


class _CopiesEdit:
    """An edit of :mod:`asyrp_lib.core.process` for K copies of N faces (rows copy-major): copy k's own Δh or Δε.

    One encoder pass for all rows; one decoder pass over [h + Δh of the Δh copies ; h of all rows]."""

    def __init__(self, edits: list, n_faces: int, record: bool):
        self.edits, self.n, self.record = edits, n_faces, record
        self.log = [{"t": [], "dh": [], "de": []} for _ in edits]

    def __call__(self, hs, x, t, i, n):
        enc = hs.encode(x, t)
        h, N = enc.h, self.n
        hrows = [k for k, e in enumerate(self.edits) if isinstance(e, DeltaH)]
        idx = (torch.cat([torch.arange(k * N, (k + 1) * N) for k in hrows]) if hrows
               else torch.empty(0, dtype=torch.long))
        deltas = [self.edits[k].delta(h[k * N:(k + 1) * N], enc.timesteps[k * N:(k + 1) * N], i)
                  .to(h.device, h.dtype).expand(N, *h.shape[1:]) for k in hrows]
        rows = torch.cat([idx, torch.arange(h.shape[0])]).to(h.device)
        h_in = torch.cat([h[idx.to(h.device)] + torch.cat(deltas), h]) if hrows else h
        out = hs.decode(enc, h_in, rows=rows if hrows else None)
        eps = out[len(idx):]
        eps_edit = eps.clone()
        if hrows:
            eps_edit[idx.to(h.device)] = out[:len(idx)]
        for k, e in enumerate(self.edits):
            if isinstance(e, EpsShift):
                eps_edit[k * N:(k + 1) * N] += e.at(i).detach().to(eps.device, eps.dtype)
        if self.record:
            change = (eps_edit - eps).flatten(1).norm(dim=1).cpu()
            for k in range(len(self.edits)):
                self.log[k]["t"].append(int(t))
                self.log[k]["de"].append(change[k * N:(k + 1) * N])
                dh = deltas[hrows.index(k)] if k in hrows else torch.zeros_like(h[:N])
                self.log[k]["dh"].append(dh.detach().cpu())
        return eps_edit[:n], eps

    def records(self) -> list[StepRecord]:
        return [StepRecord(timesteps=lg["t"], delta_h=torch.stack(lg["dh"]), eps_change=torch.stack(lg["de"]))
                for lg in self.log]


def _as_edit(editor: AsyrpEditor, spec):
    """A copy's edit: None, a DeltaH, an EpsSteps, or directions for the editor (→ DeltaH of their sum)."""
    if spec is None or isinstance(spec, (DeltaH, EpsSteps)):
        return spec, []
    dirs = editor.directions(spec)
    return DeltaH([(d.f, d.strength) for d in dirs]), dirs


def run_copies(editor: AsyrpEditor, images: torch.Tensor, copies: Sequence, *, phases: Phases | None = None,
               seed: int = 0, record: bool = False, batch_size: int | None = None, **keywords) -> Copies:
    """Edit ``images`` (N, 3, S, S) once per entry of ``copies`` (see the module docstring for what an entry may
    be) and return them all as ``Copies.images`` (K, N, 3, S, S).

    ``phases`` (:class:`~asyrp_lib.core.process.Phases`, asymmetric steps only), or its fields by name:
    ``t_edit``/``t_boost``: as :meth:`AsyrpEditor.edit` (default: the editor's, else the first direction
    checkpoint's). ``eta_boost``: η below t_boost (here 0 by default: deterministic, all copies in one batch;
    > 0: one run per copy, each from the same ``seed``). ``record``: also return what each edit did at each step
    (:class:`StepRecord`: Δh_t and the size of the ε change it caused). ``batch_size``: the most rows (copies ×
    faces) in one run of the U-Net (default: twice the editor's :attr:`~AsyrpEditor.batch_size`, its memory
    budget of an edited and a reconstruction row per image).
    """
    phases = grouped_options("run_copies", keywords, {"phases": (Phases, phases or Phases(eta_boost=0.0))})["phases"]
    if not phases.asymmetric:
        raise ValueError("phases: run_copies takes asymmetric steps only")
    t_edit, t_boost, eta_boost = phases.t_edit, phases.t_boost, phases.eta_boost
    if not isinstance(copies, (list, tuple)) or not copies:
        raise ValueError("copies: expected a non-empty list of edits (None, directions, a DeltaH or an EpsSteps)")
    if not 0.0 <= float(eta_boost) <= 1.0:
        raise ValueError(f"eta_boost: expected a value in [0, 1], got {eta_boost}")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size: expected a positive integer (rows per run) or None, got {batch_size!r}")
    edits, dirs = [], []
    for spec in copies:
        e, d = _as_edit(editor, spec)
        edits.append(e)
        dirs += d
    t_edit, t_boost = editor.intervals(t_edit, t_boost, dirs)
    x_T = editor.invert(images)
    N, K = x_T.shape[0], len(edits)
    rows = 2 * editor.batch_size if batch_size is None else int(batch_size)
    fc = min(N, rows)  # faces per run
    cg = 1 if float(eta_boost) > 0 else max(1, rows // fc)  # copies per run
    out = [[] for _ in edits]
    logs = [[] for _ in edits]
    for g0 in range(0, K, cg):
        group = list(range(g0, min(K, g0 + cg)))
        gen = torch.Generator().manual_seed(int(seed))  # every copy (group) sees the same noise, chunk by chunk
        for f0 in range(0, N, fc):
            xs = x_T[f0:f0 + fc]
            n = xs.shape[0]
            edit = _CopiesEdit([edits[k] for k in group], n, record)
            x0, _, _ = run_process(editor.hspace, xs.repeat(len(group), 1, 1, 1), editor.timesteps,
                                   editor.profile.schedule, edit=edit, t_edit=t_edit, t_boost=t_boost,
                                   eta_boost=float(eta_boost), generator=gen, progress=editor.progress,
                                   desc="editing copies")
            for j, k in enumerate(group):
                out[k].append(x0[j * n:(j + 1) * n].clamp(-1, 1))
            if record:
                for j, r in enumerate(edit.records()):
                    logs[group[j]].append(r)
    recs = None
    if record:
        recs = [StepRecord(timesteps=lg[0].timesteps, delta_h=torch.cat([r.delta_h for r in lg], 1),
                           eps_change=torch.cat([r.eps_change for r in lg], 1)) for lg in logs]
    return Copies(images=torch.stack([torch.cat(o) for o in out]), source=images, t_edit=t_edit, t_boost=t_boost,
                  records=recs)


# --------------------------------------------------------------------------------------------
# Linearity
# --------------------------------------------------------------------------------------------
@dataclass
class Sweep(Copies):
    """One direction at several strengths: ``images[k]`` at ``strengths[k]``."""

    strengths: list[float] = field(default_factory=list)


def strength_sweep(editor: AsyrpEditor, images: torch.Tensor, direction, strengths: Sequence[float],
                   **kw) -> Sweep:
    """``direction`` (anything the editor accepts) at each strength c in ``strengths`` (|c| ≤ 5), Δh_t = c f_t(h_t);
    strength 0 is the reconstruction. Keywords: those of :func:`run_copies`."""
    strengths = [check_strength(c, "strengths") for c in strengths]
    if not strengths:
        raise ValueError(f"strengths: expected a non-empty list of numbers in [-{MAX_STRENGTH:g}, {MAX_STRENGTH:g}]")
    c = run_copies(editor, images, [[(direction, s)] for s in strengths], **kw)
    return Sweep(**vars(c), strengths=strengths)


def read_attribute(preds: Sequence[dict], attribute: str, value: str | None = None) -> torch.Tensor:
    """One number per oracle prediction: the smile value (−1 … 1) for ``"smile"``, the face probability for
    ``"face"``, else 1.0 where the attribute reads ``value`` and 0.0 elsewhere."""
    if attribute in ("smile", "face"):
        return torch.tensor([float(p[attribute]) for p in preds])
    if attribute not in ATTRIBUTES:
        raise ValueError(f"attribute: expected 'face' or one of {', '.join(ATTRIBUTES)}, got {attribute!r}")
    if value not in ATTRIBUTES[attribute]:
        raise ValueError(f"value: expected one of {', '.join(ATTRIBUTES[attribute])} for {attribute!r}, got {value!r}")
    return torch.tensor([float(p[attribute] == value) for p in preds])


@dataclass
class Curve:
    """An oracle reading against strength: ``values[k, i]`` for strength k and face i."""

    attribute: str
    strengths: list[float]
    values: torch.Tensor  # (K, N)

    @property
    def mean(self) -> torch.Tensor:
        return self.values.mean(1)

    @property
    def std(self) -> torch.Tensor:
        return self.values.std(1, unbiased=False)

    def fit(self, lo: float = -float("inf"), hi: float = float("inf")) -> tuple[float, float]:
        """(slope, R²) of the least-squares line through every (strength, value) point with lo ≤ c ≤ hi."""
        c = torch.tensor(self.strengths, dtype=torch.float64)
        keep = (c >= lo) & (c <= hi)
        x = c[keep].repeat_interleave(self.values.shape[1])
        y = self.values[keep].double().flatten()
        if x.numel() < 2 or float(x.var()) == 0:
            raise ValueError("fit: needs points at two or more strengths")
        slope = float(((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum())
        resid = y - (y.mean() + slope * (x - x.mean()))
        total = float(((y - y.mean()) ** 2).sum())
        return slope, (1.0 - float((resid ** 2).sum()) / total) if total > 0 else 1.0


def linearity_curve(oracle, sweep: Sweep, attribute: str = "smile", value: str | None = None) -> Curve:
    """The oracle's reading of ``attribute`` (see :func:`read_attribute`) on every image of a strength sweep."""
    values = torch.stack([read_attribute(oracle.predict(x), attribute, value) for x in sweep.images])
    return Curve(attribute=attribute, strengths=list(sweep.strengths), values=values)


# --------------------------------------------------------------------------------------------
# Composition
# --------------------------------------------------------------------------------------------
def composition(editor: AsyrpEditor, images: torch.Tensor, directions: Sequence, **kw) -> Copies:
    """The reconstruction, then the directions added one at a time: copy k edits with the first k of
    ``directions`` (a list of ``(direction, strength)`` pairs) together. Keywords: those of :func:`run_copies`."""
    pairs = [d if isinstance(d, (list, tuple)) else (d, 1.0) for d in directions]
    if not pairs:
        raise ValueError("directions: expected a non-empty list of (direction, strength) pairs")
    return run_copies(editor, images, [None] + [pairs[:k] for k in range(1, len(pairs) + 1)], **kw)


def composition_table(oracle, comp: Copies, targets: Sequence[tuple[str, str]], *, names: Sequence[str] | None = None,
                      source_attrs: Sequence[dict] | None = None, lpips=None,
                      face_threshold: float = 0.5) -> tuple[list[dict], str]:
    """Measure a :func:`composition` (toy world): per row, the share of faces reading each target value
    (``targets[j] = (attribute, value)`` of direction j), the share reading all the targets asked for so far,
    the share keeping every attribute no direction targets (:func:`asyrp_lib.toy.evaluate.edit_metrics`), the face
    rate and LPIPS to the source. Returns (rows, markdown table)."""
    targets = list(targets)
    if len(targets) != comp.images.shape[0] - 1:
        raise ValueError(f"targets: expected one (attribute, value) per direction ({comp.images.shape[0] - 1}), "
                         f"got {len(targets)}")
    names = list(names) if names is not None else ["reconstruction"] + [f"+ {a}={v}" for a, v in targets]
    others = [a for a in ATTRIBUTES if a not in {a for a, _ in targets}]
    rows = []
    for k, edited in enumerate(comp.images):
        row = {"edit": names[k]}
        for j, (a, v) in enumerate(targets):
            m = ev.edit_metrics(comp.source, edited, attribute=a, target_value=v, oracle=oracle, others=others,
                                source_attrs=source_attrs, lpips=lpips if j == 0 else None,
                                face_threshold=face_threshold)
            row[f"{a}={v}"] = m["success"]
            if j == 0:
                row.update(others_kept=m["others_kept"], face_rate=m["face_rate"], lpips=m["lpips"])
        preds = oracle.predict(edited)
        asked = targets[:k]
        row["all asked"] = (sum(p["face"] >= face_threshold and all(ev.label_of(p, a) == v for a, v in asked)
                                for p in preds) / len(preds)) if asked else None
        rows.append(row)
    cols = ["edit"] + [f"{a}={v}" for a, v in targets] + ["all asked", "others_kept", "face_rate", "lpips"]
    fmt = lambda v: "–" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))
    lines = ["| " + " | ".join(c.replace("_", " ") for c in cols) + " |", "|---|" + "---:|" * (len(cols) - 1)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return rows, "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Homogeneity: is f_t's Δh_t the same for every face?
# --------------------------------------------------------------------------------------------
def mean_delta_h(record: StepRecord) -> torch.Tensor:
    """The mean over faces of Δh_t at each edit step: a stack (K, C, H, W) for :class:`~asyrp_lib.core.process.DeltaH`
    (one global vector per step, applied to every face alike, no f_t)."""
    return record.delta_h.mean(1)


@dataclass
class Homogeneity:
    """How alike the faces' Δh_t are, per edit step."""

    timesteps: list[int]
    pairwise_cosine: torch.Tensor  # (K,) mean cos(Δh_t^i, Δh_t^j) over pairs of faces i ≠ j
    norm: torch.Tensor  # (K,) mean ‖Δh_t^i‖ over faces
    mean_norm: torch.Tensor  # (K,) ‖mean_i Δh_t^i‖ (equals ``norm`` only if every face gets the same Δh_t)


def homogeneity(record: StepRecord) -> Homogeneity:
    """Pairwise cosine similarity and norms of the Δh_t of a :class:`StepRecord` (needs two or more faces)."""
    d = record.delta_h.flatten(2).double()  # (K, N, D)
    n = d.shape[1]
    if n < 2:
        raise ValueError("record: homogeneity needs the Δh of two or more faces")
    u = d / d.norm(dim=2, keepdim=True).clamp_min(1e-12)
    gram = u @ u.transpose(1, 2)  # (K, N, N)
    pair = (gram.sum((1, 2)) - gram.diagonal(dim1=1, dim2=2).sum(1)) / (n * (n - 1))
    return Homogeneity(timesteps=list(record.timesteps), pairwise_cosine=pair.float(),
                       norm=d.norm(dim=2).mean(1).float(), mean_norm=d.mean(1).norm(dim=1).float())


# --------------------------------------------------------------------------------------------
# Robustness: random edits of matched size
# --------------------------------------------------------------------------------------------
def _random_like_norms(norms: torch.Tensor, shape, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(int(seed))
    r = torch.randn((len(norms), *shape), generator=g)
    return r * (norms.float() / r.flatten(1).norm(dim=1)).view(-1, *[1] * len(shape))


def matched_random_delta_h(record: StepRecord, seed: int = 0) -> torch.Tensor:
    """A random Δh per edit step (Gaussian direction, the same for every face) whose norm at each step is the
    mean ‖Δh_t‖ of the recorded edit: a stack (K, C, H, W) for :class:`~asyrp_lib.core.process.DeltaH`."""
    return _random_like_norms(record.delta_h.flatten(2).norm(dim=2).mean(1), record.delta_h.shape[2:], seed)


def matched_random_delta_eps(record: StepRecord, image_shape, seed: int = 0) -> EpsSteps:
    """A random Δε per edit step (Gaussian, the same for every face) whose norm at each step is the mean norm of
    the ε change the recorded edit caused, ‖ε(x_t | h_t + Δh_t) − ε(x_t)‖: an :class:`EpsSteps`."""
    return EpsSteps(_random_like_norms(record.eps_change.mean(1), tuple(image_shape), seed))


# --------------------------------------------------------------------------------------------
# Unsupervised directions: PCA of h_t
# --------------------------------------------------------------------------------------------
@torch.no_grad()
def collect_h(hspace, images: torch.Tensor, t: int, schedule: ddim.Schedule, *, seed: int = 0,
              batch_size: int = 32) -> torch.Tensor:
    """h_t of each image at timestep ``t``, with x_t drawn from the forward process
    x_t = √ᾱ_t x_0 + √(1−ᾱ_t) z (seeded z): (N, C, H, W) on the CPU."""
    g = torch.Generator().manual_seed(int(seed))
    a = schedule.alpha(t)
    hs = []
    for i in range(0, images.shape[0], batch_size):
        x0 = images[i:i + batch_size]
        z = torch.randn(x0.shape, generator=g).to(x0)
        x_t = a.sqrt().to(x0) * x0 + (1 - a).sqrt().to(x0) * z
        hs.append(hspace.encode(x_t.to(hspace.device, hspace.dtype), t).h.float().cpu())
    return torch.cat(hs)


@dataclass
class PCA:
    """Principal components of h: ``components[k]`` is a unit vector of h's shape."""

    components: torch.Tensor  # (k, C, H, W), orthonormal, by decreasing variance
    std: torch.Tensor  # (k,) standard deviation of h along each component
    explained_variance_ratio: torch.Tensor  # (k,) share of the total variance
    mean: torch.Tensor  # (C, H, W)


def _fix_sign(v: torch.Tensor) -> torch.Tensor:
    """Singular vectors have no sign: make each row's largest-magnitude entry positive (reproducible)."""
    flat = v.flatten(1)
    s = torch.sign(flat.gather(1, flat.abs().argmax(1, keepdim=True)))
    return v * s.view(-1, *[1] * (v.dim() - 1))


def pca_directions(h: torch.Tensor, k: int = 4) -> PCA:
    """The top ``k`` principal components of a set of h (N, C, H, W), via the SVD of the centred data."""
    if not isinstance(h, torch.Tensor) or h.dim() != 4 or h.shape[0] < 2:
        raise ValueError(f"h: expected a tensor (N ≥ 2, C, H, W), got {tuple(getattr(h, 'shape', ()))}")
    if not 1 <= int(k) <= h.shape[0] - 1:
        raise ValueError(f"k: expected 1 ≤ k ≤ N − 1 = {h.shape[0] - 1}, got {k}")
    X = h.flatten(1).double()
    mean = X.mean(0)
    _, S, Vt = torch.linalg.svd(X - mean, full_matrices=False)
    var = S ** 2 / (X.shape[0] - 1)
    comps = _fix_sign(Vt[:k]).float().view(k, *h.shape[1:])
    return PCA(components=comps, std=var[:k].sqrt().float(), explained_variance_ratio=(var[:k] / var.sum()).float(),
               mean=mean.float().view(h.shape[1:]))


# --------------------------------------------------------------------------------------------
# Unsupervised directions: singular vectors of the Jacobian
# --------------------------------------------------------------------------------------------
@contextlib.contextmanager
def forward_ad_context():
    """Forward-mode AD has no rule for the fused attention kernels: use the math kernel meanwhile. Also
    silences the deprecation warning torch raises from inside ``torch.func.jvp`` (its decompositions call
    ``torch.jit.script``): the caller can do nothing about it, and it would print torch's install path."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        kernel = sdpa_kernel([SDPBackend.MATH])
    except ImportError:  # older torch
        kernel = contextlib.nullcontext()
    with kernel, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.* is deprecated", category=FutureWarning)
        yield


def top_singular_vectors(f: Callable, x: torch.Tensor, k: int, *, iters: int = 8, oversample: int = 2,
                         seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Top ``k`` right singular vectors and singular values of J = ∂F/∂v at v = 0, where F(v) stacks
    f(x_i + v) over the m rows x_i of ``x`` (one v, of one row's shape, added to every row).

    ``f`` maps a batch (B, …) to a batch (B, …) row by row, with B any multiple of m (the rows of ``x`` repeated,
    version-major). Subspace iteration on J^T J with q = k + ``oversample`` vectors (each product: one
    ``torch.func.jvp`` for J v and one ``torch.func.vjp`` for J^T u, batched over the q vectors), then a
    Rayleigh–Ritz step: the SVD of J V. Returns (V (k, *row shape) unit rows, σ (k,) descending).
    """
    from torch.func import jvp, vjp

    m, shape = x.shape[0], tuple(x.shape[1:])
    q = int(k) + int(oversample)
    D = int(torch.tensor(shape).prod())
    if not 1 <= int(k) or q > D:
        raise ValueError(f"k, oversample: expected 1 ≤ k and k + oversample ≤ {D}, got {k}, {oversample}")
    x = x.detach()
    base = x.repeat(q, *[1] * len(shape))

    def J(V):  # V (q, D) → (q, M): J v for each row
        with forward_ad_context():
            _, out = jvp(f, (base,), (V.view(q, *shape).to(x).repeat_interleave(m, 0),))
        return out.reshape(q, -1).double()

    def Jt(U):  # U (q, M) → (q, D): J^T u for each row
        out, pull = vjp(f, base)
        (grad,) = pull(U.to(out).reshape(out.shape))
        return grad.reshape(q, m, D).sum(1).double()

    g = torch.Generator().manual_seed(int(seed))
    V = torch.linalg.qr(torch.randn(D, q, generator=g, dtype=torch.float64))[0].T.to(x.device)
    for _ in range(int(iters)):
        V = torch.linalg.qr(Jt(J(V)).T)[0].T
    Y = J(V)  # (q, M) = (J V)^T
    _, S, Rt = torch.linalg.svd(Y.T, full_matrices=False)  # J V = U S R^T → J (V R) = U S
    right = Rt @ V  # rows: V R, columns-as-rows
    return _fix_sign(right[:k]).float().view(k, *shape), S[:k].float()


@dataclass
class JacobianDirections:
    """Directions in h that change P_t the most (per unit of ‖Δh‖), at one timestep."""

    directions: torch.Tensor  # (k, C, H, W) unit, orthonormal
    singular_values: torch.Tensor  # (k,) ‖J v‖ = how much P_t changes per unit of Δh along v
    t: int


def jacobian_directions(hspace, x_t: torch.Tensor, t: int, schedule: ddim.Schedule, k: int = 3, *,
                        iters: int = 4, oversample: int = 1, seed: int = 0) -> JacobianDirections:
    r"""Top ``k`` right singular vectors of J = ∂P_t/∂h at the latents ``x_t`` (m faces; the same Δh added to
    each face's h_t, so J^T J = Σ_i J_i^T J_i: with m = 1 the image-specific directions of Haas et al. and Park
    et al., with m > 1 directions that move all m faces). The skip connections stay those of x_t (eq. 5)."""
    with torch.no_grad():
        enc = hspace.encode(x_t.to(hspace.device, hspace.dtype), t)
    a = schedule.alpha(t)
    m = x_t.shape[0]

    def p_t(H):
        reps = H.shape[0] // m
        eps = hspace.decode(enc, H)
        return ddim.predicted_x0(enc.x_t.repeat(reps, 1, 1, 1), eps, a)

    V, S = top_singular_vectors(p_t, enc.h, k, iters=iters, oversample=oversample, seed=seed)
    return JacobianDirections(directions=V, singular_values=S, t=int(t))


# --------------------------------------------------------------------------------------------
# What a direction changes, read by the oracle
# --------------------------------------------------------------------------------------------
def direction_effects(oracle, reference: torch.Tensor, edited: torch.Tensor, *, face_threshold: float = 0.5,
                      also: float = 0.25) -> dict:
    """Which attributes the edits ``edited`` (S, N, 3, H, W: S strengths of one direction, typically −s and +s)
    change against ``reference`` (N, 3, H, W, e.g. the reconstruction), as the oracle reads them.

    Per attribute: the share of (strength, face) pairs whose label differs from the reference's (smile by its
    3-way label; hair colour only where both have hair). Returns ``changes`` (attribute → share), ``top`` (the
    attribute changed most) and ``top_share``, ``also`` (other attributes changed in ≥ ``also`` of the pairs),
    ``smile_shift`` (mean oracle smile of the last strength minus that of the first) and ``face_rate``."""
    ref = oracle.predict(reference)
    per = [oracle.predict(x) for x in edited]
    attrs = list(ATTRIBUTES)
    changed = {a: [] for a in attrs}
    for preds in per:
        for r, p in zip(ref, preds):
            kept = ev.attributes_kept(r, p, attrs)
            for a, same in kept.items():
                changed[a].append(0.0 if same else 1.0)
    changes = {a: (sum(v) / len(v) if v else 0.0) for a, v in changed.items()}
    top = max(changes, key=changes.get)
    smile = [read_attribute(p, "smile").mean().item() for p in per]
    faces = [p["face"] >= face_threshold for ps in per for p in ps]
    return {"changes": changes, "top": top, "top_share": changes[top],
            "also": {a: c for a, c in changes.items() if a != top and c >= also},
            "smile_shift": smile[-1] - smile[0], "face_rate": sum(faces) / len(faces)}


def effects_table(effects: dict[str, dict]) -> str:
    """A markdown table, one row per direction (name → :func:`direction_effects`)."""
    lines = ["| direction | moves most | share changed | also moves | smile shift | face rate |",
             "|---|---|---:|---|---:|---:|"]
    for name, e in effects.items():
        also = ", ".join(f"{a} {c:.2f}" for a, c in sorted(e["also"].items(), key=lambda kv: -kv[1])) or "–"
        top = e["top"] if e["top_share"] > 0 else "nothing"
        lines.append(f"| {name} | {top} | {e['top_share']:.2f} | {also} | {e['smile_shift']:+.2f} | "
                     f"{e['face_rate']:.2f} |")
    return "\n".join(lines)


def faces_without(avoid: dict[str, str], n: int, seed: int = ev.HELDOUT_SEED, *, size: int = 64,
                  device=None) -> ev.SourceFaces:
    """``n`` toy faces showing none of ``avoid`` (attribute → value, e.g. ``{"smile": "smiling", "glasses":
    "yes"}``): :func:`asyrp_lib.toy.evaluate.source_faces` for the first, filtered on the ground truth for the rest."""
    items = list(avoid.items())
    if not items:
        raise ValueError("avoid: expected at least one attribute → value to avoid")
    (a0, v0), rest = items[0], items[1:]
    pool = 2 * n
    while True:
        faces = ev.source_faces(a0, v0, pool, seed, size=size, device=device)
        keep = [i for i, at in enumerate(faces.attrs) if all(ev.label_of(at, a) != v for a, v in rest)]
        if len(keep) >= n or pool > 64 * n:
            break
        pool *= 2
    if len(keep) < n:
        raise ValueError(f"avoid: found only {len(keep)} of {n} faces without {avoid}")
    keep = keep[:n]
    return ev.SourceFaces(attrs=[faces.attrs[i] for i in keep], images=faces.images[keep],
                          seeds=[faces.seeds[i] for i in keep])
