r"""Training f_t for one (source text, target text) pair (Asyrp §3.2; the reference implementation's recipe).

For each training image x_0, inverted once to x_T (deterministic DDIM, η = 0, cached on disk), and each DDIM
step t ≥ t_edit going down from T:

    h_t, skips = encoder(x_t, t)                                   one shared encoder pass
    Δh_t       = f_t(h_t, t)
    P_t^edit   = P_t(ε(x_t | h_t + Δh_t)),   P_t = P_t(ε(x_t))        (course eq. 2, 5)
    L          = λ_clip · L_dir(P_t^edit, x_0) + λ_L1 · |P_t^edit - P_t|_1       (eq. 3 plus the L1 term)

and one Adam step on f_t's weights (the U-Net and CLIP stay frozen). The latent then moves to the next
timestep along the **edited** trajectory, x_{t-1} = sqrt(ᾱ_{t-1}) P_t^edit + D_t(ε(x_t)) (the asymmetric
step, eq. 4, as in the reference implementation and as at editing time), or, with
``trajectory="original"``, along the unedited one, x_{t-1} = sqrt(ᾱ_{t-1}) P_t + D_t(ε(x_t)) — the
reconstruction path, independent of f_t.

t_edit and t_boost, unless given, come from the LPIPS curves of :mod:`asyrp_lib.intervals` on the training
images (:func:`find_intervals`, cached per model, prompt pair and images).

Checkpoints go to the output folder after every epoch and on an interruption: the direction itself
(``delta_net.safetensors`` + ``delta_net.json``, see :mod:`asyrp_lib.delta_net`), ``train_state.pt``
(optimizer, position in the loop, training images) and ``history.json`` (the losses of every step).
``resume=True`` continues exactly where the last checkpoint stopped. A non-finite loss or weight stops
training with :class:`TrainingDiverged`, leaving the last good checkpoint in place.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import torch

from . import ddim
from ._utils import check_images, progress_bar
from .delta_net import META_NAME, WEIGHTS_NAME, DeltaNet
from .hspace import HSpaceUNet, h_shape as unet_h_shape
from .pipeline import InversionCache, check_intervals, default_cache_dir, image_hash, model_key

__all__ = ["TrainConfig", "TrainResult", "TrainStep", "TrainingDiverged", "train_direction", "find_intervals",
           "Intervals", "sample_training_images", "STATE_NAME", "HISTORY_NAME"]

STATE_NAME = "train_state.pt"
HISTORY_NAME = "history.json"


@dataclass
class TrainConfig:
    """Settings of one training run (defaults: the reference implementation's, checked on the tiny profile)."""

    source: str = "face"  # source prompt: what the images show now
    target: str = "smiling face"  # target prompt: what the edit should make of them
    n_steps: int = 40  # DDIM steps over [0, T) for inversion and training (the reference uses 40)
    t_edit: int | None = None  # editing interval [t_edit, T]; None: from the LPIPS curve ξ_t (find_intervals)
    t_boost: int | None = None  # quality boosting below t_boost (stored for editing); None: from λ_t
    lambda_clip: float = 1.0  # weight of the directional CLIP loss
    lambda_l1: float = 3.0  # weight of |P_t^edit - P_t|_1: keeps the edit small and local
    clip_loss_form: str = "log"  # "log": -log((1 + cos)/2) (the reference's), or "cosine": 1 - cos (eq. 3)
    lr: float = 0.1  # Adam learning rate (reference: 0.5; on the tiny profile 0.5 overshoots, 0.1 is stable)
    epochs: int = 1  # passes over the training images
    batch_size: int = 4  # images per batch; one optimizer step per (batch, timestep)
    n_images: int = 16  # images sampled from the model when no training images are given
    seed: int = 0  # seeds image sampling, the batch order and f_t's initialisation
    trajectory: str = "edited"  # next x_t along the "edited" (asymmetric) or the "original" trajectory
    hidden: int | None = None  # hidden width of f_t (default: h's channel count)
    image_size: int | None = None  # training image side (default: the profile's)
    edit_lpips: float | None = None  # ξ threshold for t_edit (default: the profile's, scaled by the text cosine)
    boost_lpips: float | None = None  # λ threshold for t_boost (default: the profile's)
    interval_points: int = 50  # timesteps at which the LPIPS curves are measured

    def validate(self) -> "TrainConfig":
        for name in ("source", "target"):
            v = getattr(self, name)
            if not isinstance(v, str) or not v.strip():
                raise ValueError(f"{name}: expected a non-empty prompt such as 'face' or 'smiling face', got {v!r}")
        if self.source.strip().lower() == self.target.strip().lower():
            raise ValueError(f"source, target: the prompts are identical ({self.source!r}); the edit direction is "
                             "undefined — give two different descriptions")
        for name in ("n_steps", "epochs", "batch_size", "n_images", "interval_points"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: expected a positive integer, got {v!r}")
        for name in ("lambda_clip", "lambda_l1"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{name}: expected a finite number ≥ 0, got {v!r}")
        if not isinstance(self.lr, (int, float)) or not math.isfinite(self.lr) or self.lr <= 0:
            raise ValueError(f"lr: expected a finite learning rate > 0, got {self.lr!r}")
        if self.clip_loss_form not in ("log", "cosine"):
            raise ValueError(f"clip_loss_form: expected 'log' or 'cosine', got {self.clip_loss_form!r}")
        if self.trajectory not in ("edited", "original"):
            raise ValueError(f"trajectory: expected 'edited' or 'original', got {self.trajectory!r}")
        return self

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


class TrainingDiverged(RuntimeError):
    """The loss or f_t's weights became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainStep:
    """What a training callback sees after each optimizer step."""

    step: int  # optimizer steps done so far (1 after the first)
    epoch: int  # 0-based
    batch: int  # 0-based index of the batch within the epoch
    indices: list  # which training images are in the batch
    t: int  # the timestep of this step
    loss: float
    loss_clip: float
    loss_l1: float
    x_t: torch.Tensor  # the latent the step was computed on (detached)
    net: DeltaNet


@dataclass
class TrainResult:
    delta_net: DeltaNet
    output: Path
    steps: int  # optimizer steps done in total
    t_edit: int
    t_boost: int
    history: list = field(default_factory=list)  # one dict per step: step, epoch, t, loss, clip, l1
    seconds: float = 0.0


# --------------------------------------------------------------------------------------------
# Training images
# --------------------------------------------------------------------------------------------
def sample_training_images(profile, n: int, *, n_steps: int | None = None, seed: int = 0,
                           image_size: int | None = None, progress: bool = True) -> torch.Tensor:
    """``n`` images sampled from the profile's model with deterministic DDIM (η = 0) from seeded noise, in [-1, 1]."""
    size = int(image_size or profile.image_size)
    g = torch.Generator().manual_seed(int(seed))
    x_T = torch.randn(n, 3, size, size, generator=g)
    ts = ddim.timesteps(int(n_steps or profile.default_steps), profile.schedule.num_train_timesteps)
    return ddim.sample(profile.unet, x_T, ts, profile.schedule, progress=progress).clamp(-1, 1)


# --------------------------------------------------------------------------------------------
# The editing and boosting intervals, cached
# --------------------------------------------------------------------------------------------
@dataclass
class Intervals:
    """t_edit and t_boost with the curves they came from."""

    t_edit: int
    t_boost: int
    timesteps: list  # ascending
    lpips_x_pt: list  # mean ξ_t = LPIPS(x, P_t) per timestep
    lpips_x_xt: list  # mean λ_t = LPIPS(x, x_t) per timestep
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
        """ξ_t and λ_t against t with the thresholds and the chosen t_edit / t_boost; returns the figure."""
        import matplotlib.pyplot as plt

        fig = None
        if ax is None:
            fig, ax = plt.subplots(figsize=(5.5, 3.2))
        ts = self.timesteps
        ax.plot(ts, self.lpips_x_pt, label="ξ_t = LPIPS(x, P_t)", color="C0")
        ax.plot(ts, self.lpips_x_xt, label="λ_t = LPIPS(x, x_t)", color="C1")
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


def find_intervals(profile, images: torch.Tensor, source: str | None = None, target: str | None = None, *,
                   edit_lpips: float | None = None, boost_lpips: float | None = None, points: int = 50,
                   scale_by_text: bool = True, cache_dir=None, use_cache: bool = True, seed: int = 0,
                   progress: bool = True) -> Intervals:
    """t_edit and t_boost for ``images`` on the profile's model (``asyrp_lib.intervals``), cached on disk.

    t_edit: where the mean ξ_t = LPIPS(x, P_t) first reaches ``edit_lpips`` (default the profile's, 0.33),
    multiplied by cos(E_T(source), E_T(target)) when both prompts are given and ``scale_by_text``
    (the reference implementation's prompt-dependent threshold, ``intervals.edit_threshold``);
    t_boost: where the mean λ_t = LPIPS(x, x_t) first reaches ``boost_lpips`` (default the profile's, 1.2).
    The cache key is the model, the prompts, the thresholds, the timesteps and the images' content.
    """
    from . import intervals as iv

    check_images(images, "images", channels=3)
    edit_base = float(edit_lpips if edit_lpips is not None else getattr(profile, "edit_lpips", 0.33))
    boost = float(boost_lpips if boost_lpips is not None else getattr(profile, "boost_lpips", 1.2))
    if (source is None) != (target is None):
        raise ValueError("source, target: give both prompts or neither")
    cosine = None
    if source is not None and scale_by_text:
        from .clip import DirectionalCLIPLoss

        cosine = DirectionalCLIPLoss(profile.clip, source, target).text_cosine
    threshold = iv.edit_threshold(cosine, edit_base) if cosine is not None else edit_base
    mkey = model_key(profile.model_id, profile.unet)
    h = hashlib.sha256(json.dumps([mkey, source, target, threshold, boost, points, seed,
                                   [image_hash(x) for x in images]]).encode()).hexdigest()[:40]
    path = Path(cache_dir or default_cache_dir() / "intervals") / f"{h}.json"
    if use_cache and path.is_file():
        try:
            found = Intervals(**json.loads(path.read_text()))
            found.cached = True
            return found
        except (TypeError, ValueError):
            pass  # an unreadable cache entry: compute again
    x0 = images.to(profile.device)
    curve_pt = iv.lpips_x_pt(profile.unet, x0, profile.schedule, profile.lpips, points, seed=seed, progress=progress)
    curve_xt = iv.lpips_x_xt(x0, profile.schedule, profile.lpips, points, seed=seed, progress=progress)
    result = Intervals(
        t_edit=iv.select_t_edit(curve_pt.timesteps, curve_pt.values, threshold),
        t_boost=iv.select_t_boost(curve_xt.timesteps, curve_xt.values, boost),
        timesteps=list(curve_pt.timesteps), lpips_x_pt=[round(float(v), 6) for v in curve_pt.mean],
        lpips_x_xt=[round(float(v), 6) for v in curve_xt.mean], edit_threshold=threshold, boost_threshold=boost,
        text_cosine=cosine, model_id=profile.model_id, source=source, target=target, n_images=int(images.shape[0]))
    if result.t_boost > result.t_edit:
        print(f"[asyrp_lib.train] t_boost ({result.t_boost}) came out above t_edit ({result.t_edit}); "
              f"using t_boost = t_edit", file=sys.stderr)
        result.t_boost = result.t_edit
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result.to_json(), indent=2))
    return result


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------
def _save_checkpoint(output: Path, net: DeltaNet, opt, pos: dict, config: TrainConfig, meta: dict,
                     images: torch.Tensor, history: list) -> None:
    for p in net.parameters():
        if not torch.isfinite(p).all():  # never overwrite a good checkpoint with broken weights
            raise TrainingDiverged(f"f_t's weights are not finite at step {pos['step']}; checkpoint not written")
    net.save(output, **meta, training={**asdict(config), "steps_done": pos["step"], "epochs_done": pos["epoch"]})
    state = {"position": {k: v for k, v in pos.items() if k != "latent"}, "latent": pos.get("latent"),
             "optimizer": opt.state_dict(), "config": asdict(config), "images": images.detach().cpu(),
             "history": history, "model_id": meta["model_id"]}
    tmp = output / (STATE_NAME + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, output / STATE_NAME)
    (output / HISTORY_NAME).write_text(json.dumps(history))


def _load_state(output: Path) -> dict:
    try:
        return torch.load(output / STATE_NAME, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{output / STATE_NAME}: cannot read the training state to resume from ({exc})") from None


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------
def train_direction(profile, config: TrainConfig, output, *, images=None, resume: bool = False,
                    progress: bool = True, callback: Callable[[TrainStep], None] | None = None,
                    cache_dir=None) -> TrainResult:
    """Train f_t for ``config.source`` → ``config.target`` on ``profile`` and write it to the folder ``output``.

    ``images``: training images — a tensor (N, 3, S, S) in [-1, 1], an image file or folder, or None to
    sample ``config.n_images`` from the model. ``resume``: continue from the checkpoint in ``output``
    (its settings are kept; only ``config.epochs`` may grow). ``callback(TrainStep)`` runs after every
    optimizer step; raising ``KeyboardInterrupt`` there (or pressing Ctrl-C) writes a checkpoint first.
    ``cache_dir``: root of the inversion and interval caches (default ``$ASYRP_CACHE`` or ``~/.cache/asyrp``).
    """
    output = Path(output)
    cache_root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    state = None
    if resume and (output / STATE_NAME).is_file():
        state = _load_state(output)
        saved = TrainConfig.from_dict(state["config"])
        for name in ("source", "target"):
            if getattr(config, name) not in (None, "") and getattr(config, name) != getattr(saved, name):
                raise ValueError(f"{name}: the checkpoint in {output} was trained with {name}="
                                 f"{getattr(saved, name)!r}, not {getattr(config, name)!r}; resume with the same "
                                 f"prompts or train into another folder")
        if state.get("model_id") != profile.model_id:
            raise ValueError(f"resume: the checkpoint in {output} was made with model {state.get('model_id')!r}, "
                             f"not {profile.model_id!r}")
        saved.epochs = max(saved.epochs, config.epochs)
        config = saved
    elif resume:
        print(f"[asyrp_lib.train] no checkpoint in {output} to resume from: starting a new run", file=sys.stderr)
    elif (output / WEIGHTS_NAME).is_file() or (output / STATE_NAME).is_file():
        raise ValueError(f"output: {output} already holds a trained direction; resume it (resume=True, "
                         f"asyrp train --resume) or choose another folder")
    config.validate()
    T = profile.schedule.num_train_timesteps
    size = int(config.image_size or profile.image_size)
    hs = HSpaceUNet(profile.unet)
    device, dtype = hs.device, hs.dtype
    timesteps = ddim.timesteps(config.n_steps, T)

    # -- training images -------------------------------------------------------------------
    if state is not None:
        x0_all = state["images"]
    elif images is None:
        x0_all = sample_training_images(profile, config.n_images, n_steps=config.n_steps, seed=config.seed,
                                        image_size=size, progress=progress)
    elif isinstance(images, torch.Tensor):
        x0_all = check_images(images, "images", channels=3).detach().float().cpu()
    else:
        from .images import load_images

        x0_all, _ = load_images(images, size)
    if tuple(x0_all.shape[-2:]) != (size, size):
        raise ValueError(f"images: expected {size}×{size} images, got {tuple(x0_all.shape)}")
    n = x0_all.shape[0]

    # -- intervals ---------------------------------------------------------------------------
    t_edit, t_boost = config.t_edit, config.t_boost
    if t_edit is None or t_boost is None:
        found = find_intervals(profile, x0_all, config.source, config.target, edit_lpips=config.edit_lpips,
                               boost_lpips=config.boost_lpips, points=config.interval_points,
                               cache_dir=cache_root / "intervals", progress=progress)
        print(f"[asyrp_lib.train] intervals{' (cached)' if found.cached else ''}: t_edit = {found.t_edit}, "
              f"t_boost = {found.t_boost}", file=sys.stderr)
        t_edit = found.t_edit if t_edit is None else t_edit
        t_boost = min(found.t_boost, t_edit) if t_boost is None else t_boost
        config.t_edit, config.t_boost = t_edit, t_boost
    t_edit, t_boost = check_intervals(t_edit, t_boost, timesteps, T)
    edit_steps = [(t, tp) for t, tp in zip(timesteps, ddim.previous_timesteps(timesteps)) if t >= t_edit]

    # -- inversion (cached on disk) ----------------------------------------------------------
    mkey = model_key(profile.model_id, profile.unet)
    cache = InversionCache(cache_root / "inversions")
    x_T_all = cache.invert(profile.unet, x0_all.to(device, dtype), timesteps, profile.schedule, model=mkey,
                           progress=progress).cpu()
    if progress:
        print(f"[asyrp_lib.train] inversions: {cache.hits} cached, {cache.misses} computed", file=sys.stderr)

    # -- f_t, optimizer, loss ------------------------------------------------------------------
    from .clip import DirectionalCLIPLoss

    h_shape = unet_h_shape(profile.unet, size)
    meta = {"model_id": profile.model_id, "source": config.source, "target": config.target, "t_edit": t_edit,
            "t_boost": t_boost, "steps": config.n_steps, "image_size": size}
    if state is not None:
        net = DeltaNet.load(output, h_shape=h_shape, model_id=profile.model_id)
    else:
        with torch.random.fork_rng(devices=[]):  # seeded initialisation, the global RNG left alone
            torch.manual_seed(config.seed)
            net = DeltaNet(h_shape, hidden=config.hidden, metadata=dict(meta))
    net = net.to(device=device, dtype=dtype).train()
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    if state is not None:
        opt.load_state_dict(state["optimizer"])
    loss_dir = DirectionalCLIPLoss(profile.clip, config.source, config.target, form=config.clip_loss_form)
    history = list(state["history"]) if state is not None else []
    pos = dict(state["position"]) if state is not None else {"step": 0, "epoch": 0, "batch": 0, "t_index": 0}
    pos["latent"] = state.get("latent") if state is not None else None
    n_batches = -(-n // config.batch_size)
    total = config.epochs * n_batches * len(edit_steps)
    sched = profile.schedule
    start = time.perf_counter()

    bar = progress_bar(range(total), enabled=progress, desc=f"training f_t: {config.target!r}", total=total,
                       initial=pos["step"]) if progress else None

    def checkpoint():
        _save_checkpoint(output, net, opt, pos, config, meta, x0_all, history)

    try:
        for epoch in range(pos["epoch"], config.epochs):
            order = torch.randperm(n, generator=torch.Generator().manual_seed(config.seed + epoch))
            first_batch = pos["batch"] if epoch == pos["epoch"] else 0
            for b in range(first_batch, n_batches):
                idx = order[b * config.batch_size:(b + 1) * config.batch_size]
                x0 = x0_all[idx].to(device, dtype)
                with torch.no_grad():
                    src = loss_dir.encoder.encode_image(x0)
                resuming = epoch == pos["epoch"] and b == pos["batch"] and pos["t_index"] > 0
                j0 = pos["t_index"] if resuming else 0
                x = (pos["latent"] if resuming else x_T_all[idx]).to(device, dtype)
                for j in range(j0, len(edit_steps)):
                    t, t_prev = edit_steps[j]
                    a_t, a_prev = sched.alpha(t), sched.alpha(t_prev)
                    with torch.no_grad():
                        enc = hs.encode(x, t)  # the one encoder pass of this step
                        eps = hs.decode(enc)  # ε(x_t), no graph needed
                    delta = net(enc.h, t)
                    eps_edit = hs.decode(enc, enc.h + delta)  # ε(x_t | h + Δh): the graph reaches f_t only
                    p_edit = ddim.predicted_x0(x, eps_edit, a_t)
                    p_orig = ddim.predicted_x0(x, eps, a_t)
                    l_clip = loss_dir(p_edit, source_embeds=src).mean()
                    l_l1 = (p_edit - p_orig).abs().mean()
                    loss = config.lambda_clip * l_clip + config.lambda_l1 * l_l1
                    if not torch.isfinite(loss):
                        raise TrainingDiverged(
                            f"the loss became {float(loss.detach())} at step {pos['step'] + 1} (epoch {epoch + 1}, t = {t}; "
                            f"directional {float(l_clip.detach()):.4g}, L1 {float(l_l1.detach()):.4g}). "
                            + _kept(output) + " Try a smaller learning rate (lr).")
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    if not all(torch.isfinite(p).all() for p in net.parameters()):
                        raise TrainingDiverged(f"the update at step {pos['step'] + 1} (epoch {epoch + 1}, t = {t}) "
                                               f"made f_t's weights non-finite. " + _kept(output)
                                               + " Try a smaller learning rate (lr).")
                    with torch.no_grad():
                        if config.trajectory == "edited":  # asymmetric step, eq. (4)
                            x_next = ddim.ddim_step(x, eps_edit.detach(), a_t, a_prev, eps_direction=eps).x_prev
                        else:
                            x_next = ddim.ddim_step(x, eps, a_t, a_prev).x_prev
                    record = {"step": pos["step"] + 1, "epoch": epoch, "t": t, "loss": float(loss.detach()),
                              "clip": float(l_clip.detach()), "l1": float(l_l1.detach())}
                    history.append(record)
                    x_prev_latent = x
                    x = x_next
                    pos.update(step=pos["step"] + 1, epoch=epoch, batch=b, t_index=j + 1, latent=x.detach().cpu())
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{record['loss']:.4f}", clip=f"{record['clip']:.4f}",
                                        l1=f"{record['l1']:.4f}", t=t)
                    if callback is not None:
                        callback(TrainStep(step=pos["step"], epoch=epoch, batch=b, indices=idx.tolist(), t=t,
                                           loss=record["loss"], loss_clip=record["clip"], loss_l1=record["l1"],
                                           x_t=x_prev_latent.detach(), net=net))
                pos.update(epoch=epoch, batch=b + 1, t_index=0, latent=None)
            pos.update(epoch=epoch + 1, batch=0, t_index=0, latent=None)
            checkpoint()
    except KeyboardInterrupt:
        checkpoint()
        print(f"[asyrp_lib.train] interrupted at step {pos['step']}: checkpoint written to {output}; "
              f"resume with resume=True (asyrp train --resume)", file=sys.stderr)
        raise
    finally:
        if bar is not None:
            bar.close()
    net.eval()
    seconds = time.perf_counter() - start
    return TrainResult(delta_net=net, output=output, steps=pos["step"], t_edit=t_edit, t_boost=t_boost,
                       history=history, seconds=seconds)


def _kept(output: Path) -> str:
    if (output / WEIGHTS_NAME).is_file() and (output / META_NAME).is_file():
        return f"The last good checkpoint in {output} is kept."
    return "No checkpoint had been written yet."
