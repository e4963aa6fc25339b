r"""The editing interval and the quality-boosting interval (Asyrp §3.3–3.4; the schedule of eq. 6).

Two LPIPS curves over the timesteps t, averaged over a set of images x_0:

    LPIPS(x_0, P_t)         how far the model's prediction of x_0 at t is from x_0: how much is still undecided
    γ_t = LPIPS(x_0, x_t)   quality deficiency: how much noise x_t still carries

The paper's editing strength of the interval [T, t] is ξ_t = LPIPS(x_0, P_T) − LPIPS(x_0, P_t); the reference
implementation, and this library, threshold LPIPS(x_0, P_t) = LPIPS(x_0, P_T) − ξ_t itself, which needs no P_T
(for a fixed set of images the two differ by the constant LPIPS(x_0, P_T)).

with x_t drawn from the forward process q(x_t | x_0),  x_t = sqrt(ᾱ_t) x_0 + sqrt(1 - ᾱ_t) ε,  ε ~ N(0, I)
(one ε per image, shared by all t, so the curves are smooth in t), and P_t = (x_t - sqrt(1 - ᾱ_t) ε_θ(x_t, t)) / sqrt(ᾱ_t)
the model's predicted x_0 (:func:`asyrp_lib.core.ddim.predicted_x0`). As in the reference implementation the images
go to LPIPS unclamped.

The editing interval is [t_edit, T], where LPIPS(x_0, P_{t_edit}) = 0.33 (:func:`select_t_edit`); quality
boosting (stochastic, η = 1) acts on the steps with t < t_boost, where γ_{t_boost} = LPIPS(x_0, x_{t_boost}) = 1.2
(:func:`select_t_boost`). Both select the first timestep, counting up from t = 0, at which the mean curve reaches
the threshold. :func:`edit_threshold` is the reference implementation's prompt-dependent threshold
0.33 · cos(E_T(source), E_T(target)). :func:`find_intervals` does all of it for a profile and a prompt pair,
cached on disk, and returns :class:`Intervals`.

(The reference implementation measures the same curves along a deterministic DDIM inversion trajectory instead of
the forward process; for a well-trained model the two agree closely, and the forward process needs no inversion.)
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from . import ddim
from .._utils import check_images, grouped_options, progress_bar
from .cache import cache_dir as _cache_root, image_hash, model_key

__all__ = ["IntervalCurve", "IntervalSettings", "lpips_x_pt", "lpips_x_xt", "select_t_edit", "select_t_boost", "edit_threshold",
           "forward_diffuse", "Intervals", "find_intervals"]


@dataclass
class IntervalCurve:
    """An LPIPS curve over timesteps for a set of images."""

    timesteps: list[int]  # ascending
    values: torch.Tensor  # (T, N): the distance for each timestep and image (float32, CPU)
    mean: torch.Tensor  # (T,): the mean over images
    label: str  # "LPIPS(x, P_t)" or "LPIPS(x, x_t)"

    def first_reaching(self, threshold: float) -> int:
        """The first timestep (from t = 0 up) where the mean curve reaches ``threshold``."""
        return _first_reaching(self.timesteps, self.mean, threshold, self.label)


def forward_diffuse(x0: torch.Tensor, noise: torch.Tensor, alpha_t) -> torch.Tensor:
    """q(x_t | x_0): x_t = sqrt(ᾱ_t) x_0 + sqrt(1 - ᾱ_t) ε."""
    a = torch.as_tensor(alpha_t, dtype=x0.dtype, device=x0.device)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


# ----------------------------------------------------------------------------------------------
# The curves
# ----------------------------------------------------------------------------------------------

def _timesteps(timesteps, schedule: ddim.Schedule) -> list[int]:
    T = schedule.num_train_timesteps
    if timesteps is None:
        timesteps = 50
    if isinstance(timesteps, int) and not isinstance(timesteps, bool):
        return sorted(ddim.timesteps(timesteps, T))
    try:
        ts = sorted({int(t) for t in timesteps})
    except (TypeError, ValueError):
        raise ValueError("timesteps must be None, a number of points, or a sequence of integers") from None
    if not ts or ts[0] < 0 or ts[-1] >= T:
        raise ValueError(f"timesteps must be integers in [0, {T - 1}], got {list(timesteps)[:5]}…")
    return ts


def _module_device(module, default) -> torch.device:
    inner = getattr(module, "unet", module)
    if isinstance(inner, torch.nn.Module):
        p = next(inner.parameters(), None)
        if p is not None:
            return p.device
    return torch.device(default)


def _curve(x0, schedule, lpips, timesteps, seed, progress, label, unet=None) -> IntervalCurve:
    check_images(x0, "x0", channels=3)
    if not isinstance(schedule, ddim.Schedule):
        raise ValueError(f"schedule must be an asyrp_lib.core.ddim.Schedule, got {type(schedule).__name__}")
    ts = _timesteps(timesteps, schedule)
    lpips_device = _module_device(lpips, "cpu")
    device = _module_device(unet, lpips_device) if unet is not None else lpips_device
    dtype = next(unet.parameters()).dtype if isinstance(unet, torch.nn.Module) else torch.float32
    gen = torch.Generator().manual_seed(int(seed))
    noise = torch.randn(x0.shape, generator=gen, dtype=torch.float32).to(device)  # device-independent draw
    x0_dev = x0.to(device=device, dtype=torch.float32)
    x0_lp = x0.to(device=lpips_device, dtype=torch.float32)
    rows = []
    with torch.no_grad():
        for t in progress_bar(ts, enabled=progress, desc=label):
            a = schedule.alpha(t).to(device)
            x_t = forward_diffuse(x0_dev, noise, a)
            if unet is None:
                y = x_t
            else:
                eps = ddim.model_eps(unet, x_t.to(dtype), t).float()
                y = ddim.predicted_x0(x_t, eps, a)
            rows.append(lpips(x0_lp, y.to(lpips_device), check_range=False).float().cpu())
    values = torch.stack(rows)
    return IntervalCurve(timesteps=ts, values=values, mean=values.mean(dim=1), label=label)


def lpips_x_pt(unet, x0: torch.Tensor, schedule: ddim.Schedule, lpips, timesteps=None, *, seed: int = 0,
               progress: bool = True) -> IntervalCurve:
    """LPIPS(x_0, P_t) for each timestep and image (the curve that selects t_edit).

    ``unet``: a ``diffusers.UNet2DModel`` (or anything :func:`asyrp_lib.core.ddim.model_eps` accepts);
    ``x0``: images ``(N, 3, H, W)`` in [-1, 1]; ``lpips``: from :func:`asyrp_lib.models.perceptual.load_lpips`;
    ``timesteps``: a sequence of ints, or a number of evenly spaced points (default 50: 0, 20, …, 980);
    ``seed``: for the forward-process noise ε. One U-Net call per timestep, batched over the images.
    """
    return _curve(x0, schedule, lpips, timesteps, seed, progress, "LPIPS(x, P_t)", unet=unet)


def lpips_x_xt(x0: torch.Tensor, schedule: ddim.Schedule, lpips, timesteps=None, *, seed: int = 0,
               progress: bool = True) -> IntervalCurve:
    """γ_t = LPIPS(x_0, x_t) for each timestep and image (no model needed). Arguments as :func:`lpips_x_pt`;
    the same ``seed`` draws the same ε, so the two curves see the same x_t."""
    return _curve(x0, schedule, lpips, timesteps, seed, progress, "LPIPS(x, x_t)")


# ----------------------------------------------------------------------------------------------
# Choosing t_edit and t_boost
# ----------------------------------------------------------------------------------------------

def _first_reaching(timesteps, values, threshold: float, name: str) -> int:
    ts = np.asarray([int(t) for t in timesteps])
    v = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values, dtype=np.float64)
    if v.ndim == 2:
        v = v.mean(axis=1)  # (T, N) → mean over images
    if v.ndim != 1 or v.shape[0] != ts.shape[0] or ts.size == 0:
        raise ValueError(f"{name}: expected values of shape (T,) or (T, N) with T = len(timesteps) = {ts.size}, "
                         f"got {v.shape}")
    if len(set(ts.tolist())) != ts.size:
        raise ValueError("timesteps must not repeat")
    if not np.isfinite(v).all():
        raise ValueError(f"{name} contains NaN or inf values")
    threshold = float(threshold)
    if not threshold > 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    order = np.argsort(ts)
    ts, v = ts[order], v[order]
    reached = np.nonzero(v >= threshold)[0]
    if reached.size == 0:
        raise ValueError(f"{name} never reaches {threshold:g}: its maximum is {v.max():.4g} at t = {ts[v.argmax()]}. "
                         "Use a lower threshold or include larger timesteps.")
    return int(ts[reached[0]])


def select_t_edit(timesteps: Sequence[int], lpips_x_pt, threshold: float = 0.33) -> int:
    """t_edit: the first timestep (counting up from 0) where the mean LPIPS(x, P_t) reaches ``threshold``.

    ``lpips_x_pt``: values ``(T,)`` or ``(T, N)`` (averaged over the N images) for ``timesteps`` in any order.
    Editing happens on [t_edit, T]. Raises ``ValueError`` (stating the maximum reached) if the curve never gets there.
    """
    return _first_reaching(timesteps, lpips_x_pt, threshold, "lpips_x_pt")


def select_t_boost(timesteps: Sequence[int], lpips_x_xt, threshold: float = 1.2) -> int:
    """t_boost: the first timestep (counting up from 0) where the mean γ_t = LPIPS(x, x_t) reaches ``threshold``.

    Quality boosting (stochastic steps, η = 1) acts on the steps with t < t_boost. Same conventions as
    :func:`select_t_edit`.
    """
    return _first_reaching(timesteps, lpips_x_xt, threshold, "lpips_x_xt")


def edit_threshold(text_cosine: float, base: float = 0.33) -> float:
    """The reference implementation's prompt-dependent threshold on LPIPS(x, P_t): ``base · cos(E_T(source), E_T(target))``.

    ``text_cosine`` is the cosine similarity of the source and target text embeddings
    (e.g. ``DirectionalCLIPLoss.text_cosine``), in (0, 1]. Since LPIPS(x, P_t) grows with t, a more different target
    text (smaller cosine) gives a lower threshold, hence a smaller t_edit and a longer editing interval
    [t_edit, T]; two nearly identical prompts keep the full ``base``.
    """
    c = float(text_cosine)
    if not 0 < c <= 1 + 1e-6:
        raise ValueError(f"text_cosine must be in (0, 1] (the cosine of two CLIP text embeddings), got {c}")
    if not base > 0:
        raise ValueError(f"base must be positive, got {base}")
    return float(base) * min(c, 1.0)


# ----------------------------------------------------------------------------------------------
# t_edit and t_boost for a profile, cached
# ----------------------------------------------------------------------------------------------

@dataclass
class Intervals:
    """t_edit and t_boost with the curves they came from."""

    t_edit: int
    t_boost: int
    timesteps: list  # ascending
    lpips_x_pt: list  # mean LPIPS(x, P_t) per timestep
    lpips_x_xt: list  # mean γ_t = LPIPS(x, x_t) per timestep
    edit_threshold: float
    boost_threshold: float
    text_cosine: float | None = None
    model_id: str = ""
    source: str | None = None
    target: str | None = None
    n_images: int = 0
    cached: bool = False

    def to_json(self) -> dict:
        d = asdict(self)
        d.pop("cached")
        return d

    def plot(self, ax=None):
        """LPIPS(x, P_t) and γ_t against t with the thresholds and the chosen t_edit / t_boost; returns the figure."""
        import matplotlib.pyplot as plt

        fig = None
        if ax is None:
            fig, ax = plt.subplots(figsize=(5.5, 3.2))
        ts = self.timesteps
        ax.plot(ts, self.lpips_x_pt, label="LPIPS(x, P_t)", color="C0")
        ax.plot(ts, self.lpips_x_xt, label="γ_t = LPIPS(x, x_t)", color="C1")
        ax.axhline(self.edit_threshold, color="C0", ls=":", lw=1)
        ax.axhline(self.boost_threshold, color="C1", ls=":", lw=1)
        ax.axvline(self.t_edit, color="C0", ls="--", lw=1, label=f"t_edit = {self.t_edit}")
        ax.axvline(self.t_boost, color="C1", ls="--", lw=1, label=f"t_boost = {self.t_boost}")
        ax.set_xlabel("t")
        ax.set_ylabel("LPIPS")
        ax.legend(fontsize=7)
        return fig or ax.figure

    def save(self, json_path, png_path=None) -> None:
        json_path = Path(json_path)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(self.to_json(), indent=2))
        if png_path is not None:
            import matplotlib

            matplotlib.use("Agg", force=False)
            import matplotlib.pyplot as plt

            fig = self.plot()
            fig.tight_layout()
            fig.savefig(png_path, dpi=120)
            plt.close(fig)


@dataclass(frozen=True)
class IntervalSettings:
    """What :func:`find_intervals` measures and where it puts its thresholds (together, the cache key with the
    model, the prompts and the images): ``edit_lpips`` (the LPIPS(x, P_t) threshold of t_edit; default the
    profile's, 0.33), ``boost_lpips`` (the γ_t threshold of t_boost; default the profile's, 1.2),
    ``scale_by_text`` (multiply the t_edit threshold by the prompts' text cosine), ``points`` (timesteps on each
    LPIPS curve), ``seed`` (the noise of the x_t curve)."""

    edit_lpips: float | None = None
    boost_lpips: float | None = None
    scale_by_text: bool = True
    points: int = 50
    seed: int = 0


def find_intervals(profile, images: torch.Tensor, source: str | None = None, target: str | None = None, *,
                   settings: IntervalSettings | None = None, t_edit: int | None = None, progress: bool = True,
                   **keywords) -> Intervals:
    """t_edit and t_boost for ``images`` on the profile's model, cached on disk.

    t_edit: where the mean LPIPS(x, P_t) first reaches ``edit_lpips`` (default the profile's, 0.33),
    multiplied by cos(E_T(source), E_T(target)) when both prompts are given and ``scale_by_text``
    (the reference implementation's prompt-dependent threshold, :func:`edit_threshold`), unless ``t_edit`` is
    given; t_boost: where the mean γ_t = LPIPS(x, x_t) first reaches ``boost_lpips`` (default the profile's,
    1.2), lowered to t_edit if it comes out above (boosting happens after editing; said on stderr).
    The cache key is the model, the prompts, the thresholds, the timesteps and the images' content.

    ``settings``: an :class:`IntervalSettings`, whose fields may also be given by name (``points=20``); and by
    name, ``cache_dir`` (the cache's folder) and ``use_cache`` (``False``: neither read nor write it).
    """
    g = grouped_options("find_intervals", keywords, {"settings": (IntervalSettings, settings)},
                        also=("cache_dir", "use_cache"))
    settings, cache_dir, use_cache = g["settings"], g.get("cache_dir"), g.get("use_cache", True)
    edit_lpips, boost_lpips, scale_by_text = settings.edit_lpips, settings.boost_lpips, settings.scale_by_text
    points, seed = settings.points, settings.seed
    check_images(images, "images", channels=3)
    edit_base = float(edit_lpips if edit_lpips is not None else getattr(profile, "edit_lpips", 0.33))
    boost = float(boost_lpips if boost_lpips is not None else getattr(profile, "boost_lpips", 1.2))
    if (source is None) != (target is None):
        raise ValueError("source, target: give both prompts or neither")
    cosine = None
    if source is not None and scale_by_text:
        from .clip_loss import DirectionalCLIPLoss

        cosine = DirectionalCLIPLoss(profile.clip, source, target).text_cosine
    threshold = edit_threshold(cosine, edit_base) if cosine is not None else edit_base
    mkey = model_key(profile.model_id, profile.unet)
    h = hashlib.sha256(json.dumps([mkey, source, target, threshold, boost, points, seed,
                                   [image_hash(x) for x in images]]).encode()).hexdigest()[:40]
    path = Path(cache_dir or _cache_root("intervals")) / f"{h}.json"
    if use_cache and path.is_file():
        try:
            found = Intervals(**json.loads(path.read_text()))
            found.cached = True
            return _with_t_edit(found, t_edit)
        except (TypeError, ValueError):
            pass  # an unreadable cache entry: compute again
    x0 = images.to(profile.device)
    curve_pt = lpips_x_pt(profile.unet, x0, profile.schedule, profile.lpips, points, seed=seed, progress=progress)
    curve_xt = lpips_x_xt(x0, profile.schedule, profile.lpips, points, seed=seed, progress=progress)
    result = Intervals(
        t_edit=select_t_edit(curve_pt.timesteps, curve_pt.values, threshold),
        t_boost=select_t_boost(curve_xt.timesteps, curve_xt.values, boost),
        timesteps=list(curve_pt.timesteps), lpips_x_pt=[round(float(v), 6) for v in curve_pt.mean],
        lpips_x_xt=[round(float(v), 6) for v in curve_xt.mean], edit_threshold=threshold, boost_threshold=boost,
        text_cosine=cosine, model_id=profile.model_id, source=source, target=target, n_images=int(images.shape[0]))
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result.to_json(), indent=2))
    return _with_t_edit(result, t_edit)


def _with_t_edit(found: Intervals, t_edit: int | None) -> Intervals:
    """``found`` with t_edit replaced when given, and t_boost lowered to t_edit when above it (the one clamp)."""
    if t_edit is not None:
        found.t_edit = int(t_edit)
    if found.t_boost > found.t_edit:
        print(f"[asyrp_lib.core.intervals] t_boost ({found.t_boost}) is above t_edit ({found.t_edit}); using t_boost = "
              f"t_edit", file=sys.stderr)
        found.t_boost = found.t_edit
    return found
