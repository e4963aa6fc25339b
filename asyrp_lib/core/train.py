r"""Training f_t for one (source text, target text) pair (Asyrp §3.2; the reference implementation's recipe).

For each training image x_0, inverted once to x_T (deterministic DDIM, η = 0, cached on disk), and each DDIM
step t ≥ t_edit going down from T (:func:`asyrp_lib.core.process.compute_step`, one shared encoder pass):

    Δh_t       = f_t(h_t, t)
    P_t^edit   = P_t(ε(x_t | h_t + Δh_t))                                          (course eq. 2, 5)
    L_t        = λ_clip · L_dir(P_t^edit, x_0) + λ_L1 · w_text · |P_t^edit − P_t^source|_1   (asyrp_lib.core.loss)

and one Adam step on f_t's weights (the U-Net and CLIP stay frozen). P_t^source is P_t on the unedited
trajectory at the same t (the reconstruction from the same x_T, run in the same batch), as the reference
implementation defines it (``l1_target="unedited"``, the default; ``"current"``: P_t(ε(x_t)) at the edited
latent). The latent then moves to the next timestep along the **edited** trajectory by the asymmetric step
(eq. 4, :func:`asyrp_lib.core.process.asymmetric_step`, as at editing time), or, with
``trajectory="original"``, along the unedited one (independent of f_t).

After the last epoch, a recipe with a ``strength_share`` (the toy profile's) chooses the direction's strength on
fresh samples as CLIP reads them (:mod:`asyrp_lib.core.strength`) and saves f_t scaled by it, so that strength 1
of the saved direction is the chosen one; ``train_state.pt`` keeps f_t as trained.

t_edit and t_boost, unless given, come from the LPIPS curves of :func:`asyrp_lib.core.intervals.find_intervals` on
the training images (cached per model, prompt pair and images).

Checkpoints go to the output folder every ``save_every_seconds`` (default 60 s: an interruption or a lost Colab
runtime costs at most about a minute) or ``save_every_steps`` optimizer steps, at the end of every epoch and on
Ctrl-C: the direction itself (``delta_net.safetensors`` + ``delta_net.json``, see :mod:`asyrp_lib.core.delta_net`),
``train_state.pt`` (f_t's weights *with* the optimizer, the position in the loop, the latents of a batch in
progress and the training images, written atomically as one file) and ``history.json``. ``resume=True``
continues exactly from ``train_state.pt``. A non-finite loss or weight stops training with
:class:`TrainingDiverged`, leaving the last good checkpoint in place.

Speed options (opt-in, as in :class:`~asyrp_lib.core.pipeline.AsyrpEditor`): ``batch_size``, ``precision="bf16"``
(bfloat16 autocast in the frozen U-Net; f_t, its optimizer and the loss stay float32), ``channels_last`` and
``compile`` (the gradient-free passes: inversion, the encoder, the unedited rows; see :mod:`asyrp_lib.core.hspace`).
They belong to the machine, not to the run: resuming uses the ones given then. Inversions run
batched and are cached (per precision); the encoder runs once per step, on one copy of x_T at the first step.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import InitVar, dataclass, field, fields, replace
from pathlib import Path
from typing import Callable

import torch

from . import ddim
from .._utils import (check_compile, check_flag, check_images, check_int, check_number, check_precision,
                     check_prompt_pair, check_share, grouped_options, progress_bar)
from .cache import InversionCache, cache_dir as default_cache_root, model_key
from .delta_net import META_NAME, WEIGHTS_NAME, DeltaNet
from .hspace import HSpaceUNet, h_shape as unet_h_shape
from .intervals import Intervals, find_intervals
from .loss import AsyrpLoss, LossSettings, TrainingDiverged, loss_step
from .process import DeltaH, advance, check_intervals, compute_step

__all__ = ["TrainConfig", "Recipe", "PAPER_RECIPE", "RECIPE_FIELDS", "TrainResult", "TrainStep", "TrainingDiverged", "train_direction", "find_intervals",
           "Intervals", "sample_training_images", "STATE_NAME", "HISTORY_NAME"]

STATE_NAME = "train_state.pt"
HISTORY_NAME = "history.json"


@dataclass(frozen=True)
class Recipe:
    """How f_t is trained unless told otherwise: ``asyrp train``, ``TrainConfig`` and the notebooks take these
    from the profile's ``recipe``; ``PAPER_RECIPE`` (``asyrp train --recipe paper``) is the paper's."""

    name: str
    lr: float  # Adam's learning rate
    lambda_l1: float  # λ_L1: the weight of |P_t^edit − P_t^source|
    t_edit: int | None  # edit for t ≥ t_edit; None: where LPIPS(x, P_t) reaches the profile's threshold
    l1_spare: float = 0.0  # share of each image's most-changed pixels the L1 term leaves out (asyrp_lib.core.loss)
    l1_target: str = "unedited"  # P_t^source: P_t of the unedited trajectory (the paper's) or "current"
    # after training, choose the strength on fresh samples (asyrp_lib.core.strength): where CLIP reads the target
    # on this share of those lacking it; 0: keep f_t as trained (the paper's)
    strength_share: float = 0.0
    note: str = ""  # where it comes from

    def describe(self) -> str:
        t = f"t_edit {self.t_edit}" if self.t_edit is not None else "t_edit from the LPIPS rule"
        spare = f", L1 spare {self.l1_spare:g}" if self.l1_spare else ""
        strength = (f", strength chosen for a CLIP share of {self.strength_share:g} on fresh samples"
                    if self.strength_share else "")
        return f"{self.name} recipe: Adam lr {self.lr:g}, λ_L1 {self.lambda_l1:g}{spare}, {t}{strength}"


#: The paper's settings (λ_CLIP 1, λ_L1 3, the editing interval from LPIPS(x, P_t) = 0.33 × the prompts' cosine), with
#: Adam at 0.1 (the reference implementation trains f_t with SGD at 0.5). On the toy world, f_t trained at lr 0.1
#: overshoots to large Δh that change the other attributes (docs/model_card_log.md, *f_t at small learning rates*).
PAPER_RECIPE = Recipe("paper", lr=0.1, lambda_l1=3.0, t_edit=None,
                      note="the paper's λ_L1 and LPIPS rule for t_edit; Adam at 0.1")


#: The fields a Recipe fills when a TrainConfig leaves them at None.
RECIPE_FIELDS = ("lr", "lambda_l1", "t_edit", "l1_spare", "l1_target", "strength_share")


@dataclass
class TrainConfig:
    """Settings of one training run. The learning rate, λ_L1, t_edit and the L1 options left at ``None`` come from
    a recipe (:meth:`resolved`): the profile's own (``recipe="profile"``, the default: the settings measured to
    work on that profile) or the paper's (``recipe="paper"``: λ_L1 3, t_edit from the LPIPS rule, Adam at 0.1)."""

    source: str = "face"  # source prompt: what the images show now
    target: str = "smiling face"  # target prompt: what the edit should make of them
    n_steps: int = 40  # DDIM steps over [0, T) for inversion and training (the reference uses 40)
    recipe: str = "profile"  # where the None fields below come from: "profile" (its recipe) or "paper"
    t_edit: int | None = None  # editing interval [T, t_edit]; None: the recipe's (which may be the LPIPS rule)
    t_boost: int | None = None  # quality boosting below t_boost (stored for editing); None: from γ_t
    lr: float | None = None  # Adam learning rate (None: the recipe's)
    # after training, the strength is chosen on fresh samples so that CLIP reads the target on this share of those
    # lacking it, and baked into f_t (asyrp_lib.core.strength; 0: f_t as trained; None: the recipe's)
    strength_share: float | None = None
    strength_samples: int = 64  # fresh samples the strength is chosen on
    epochs: int = 1  # passes over the training images
    batch_size: int = 4  # images per batch; one optimizer step per (batch, timestep)
    n_images: int = 16  # images sampled from the model when no training images are given
    seed: int = 0  # seeds image sampling, the batch order and f_t's initialisation
    trajectory: str = "edited"  # next x_t along the "edited" (asymmetric) or the "original" trajectory
    hidden: int | None = None  # hidden width of f_t (default: h's channel count)
    image_size: int | None = None  # training image side (default: the profile's)
    edit_lpips: float | None = None  # threshold on LPIPS(x, P_t) for t_edit (default: the profile's × text cosine)
    boost_lpips: float | None = None  # λ threshold for t_boost (default: the profile's)
    interval_points: int = 50  # timesteps at which the LPIPS curves are measured
    save_every_seconds: float = 60.0  # checkpoint at least this often during an epoch (0: off)
    save_every_steps: int = 0  # ... and every this many optimizer steps (0: off)
    precision: str = "fp32"  # the U-Net's arithmetic: "fp32", or "bf16" (autocast; f_t and the loss stay fp32)
    channels_last: bool = False  # channels-last memory format for the U-Net (its weights converted in place)
    compile: bool | str = False  # torch.compile the U-Net's halves (True or a backend name)
    # the loss (asyrp_lib.core.loss): λ_CLIP, λ_L1, the CLIP loss's form, the L1 target, its text weight, the spared
    # share; λ_L1, the L1 target and the spared share left at None come from the recipe
    loss_settings: LossSettings = field(default_factory=LossSettings)
    # the loss's fields one by one, as before (each replaces that field of loss_settings; read them back as
    # config.lambda_l1 etc.); clip_loss_form is LossSettings.clip_form
    lambda_clip: InitVar[float | None] = None
    lambda_l1: InitVar[float | None] = None
    clip_loss_form: InitVar[str | None] = None
    l1_target: InitVar[str | None] = None
    l1_text_weight: InitVar[bool | None] = None
    l1_spare: InitVar[float | None] = None

    def __post_init__(self, lambda_clip, lambda_l1, clip_loss_form, l1_target, l1_text_weight, l1_spare):
        if isinstance(self.loss_settings, dict):  # read back from a saved configuration
            self.loss_settings = LossSettings(**self.loss_settings)
        given = dict(lambda_clip=lambda_clip, lambda_l1=lambda_l1, clip_form=clip_loss_form, l1_target=l1_target,
                     l1_text_weight=l1_text_weight, l1_spare=l1_spare)
        given = {k: v for k, v in given.items() if v is not None}
        if given:
            self.loss_settings = replace(self.loss_settings, **given)

    def to_dict(self) -> dict:
        """The settings as one flat dict (the loss's fields by their TrainConfig names), as saved with a
        direction; :meth:`from_dict` reads it back."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "loss_settings"}
        return {**d, **{name: getattr(self, name) for name in LOSS_KEYWORDS}}

    def resolved(self, profile) -> "TrainConfig":
        """A copy with every field left at ``None`` that a recipe sets taken from it: the profile's recipe
        (``profile.recipe``) or, with ``recipe="paper"``, the paper's; t_edit stays ``None`` when the recipe
        leaves it to the LPIPS rule."""
        if self.recipe not in ("profile", "paper"):
            raise ValueError(f"recipe: expected 'profile' or 'paper', got {self.recipe!r}")
        source = PAPER_RECIPE if self.recipe == "paper" else getattr(profile, "recipe", PAPER_RECIPE)
        return replace(self, **{f: getattr(source, f) for f in RECIPE_FIELDS if getattr(self, f) is None})

    def validate(self) -> "TrainConfig":
        missing = [f for f in RECIPE_FIELDS if f not in ("t_edit", "strength_share") and getattr(self, f) is None]
        if missing:
            raise ValueError(f"{', '.join(missing)}: not set; resolve the configuration against a profile first "
                             f"(TrainConfig.resolved(profile), as train_direction does)")
        check_prompt_pair(self.source, self.target)
        for name in ("n_steps", "epochs", "batch_size", "n_images", "interval_points", "strength_samples"):
            check_int(getattr(self, name), name)
        check_int(self.save_every_steps, "save_every_steps", minimum=0)
        check_number(self.save_every_seconds, "save_every_seconds")
        check_number(self.lr, "lr", positive=True)
        if self.strength_share is not None:  # None here (not resolved against a recipe): f_t as trained
            check_share(self.strength_share, "strength_share")
        check_precision(self.precision)
        check_flag(self.channels_last, "channels_last")
        check_compile(self.compile)
        if self.trajectory not in ("edited", "original"):
            raise ValueError(f"trajectory: expected 'edited' or 'original', got {self.trajectory!r}")
        if self.clip_loss_form not in ("log", "cosine"):
            raise ValueError(f"clip_loss_form: expected 'log' or 'cosine', got {self.clip_loss_form!r}")
        self.loss  # checks λ_clip, λ_L1, l1_target and l1_spare
        return self

    @property
    def loss(self) -> AsyrpLoss:
        """The loss settings (:class:`asyrp_lib.core.loss.AsyrpLoss`) of this configuration."""
        return self.loss_settings.as_loss()

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """A configuration from :meth:`to_dict`'s flat form (or with ``loss_settings`` as a dict); other keys
        are left out."""
        names = {f.name for f in fields(cls)} | set(LOSS_KEYWORDS)
        return cls(**{k: v for k, v in d.items() if k in names})


#: TrainConfig's keywords for the fields of its LossSettings, and the field each names.
LOSS_KEYWORDS = {"lambda_clip": "lambda_clip", "lambda_l1": "lambda_l1", "clip_loss_form": "clip_form",
                 "l1_target": "l1_target", "l1_text_weight": "l1_text_weight", "l1_spare": "l1_spare"}
for _name, _field in LOSS_KEYWORDS.items():  # config.lambda_l1 reads config.loss_settings.lambda_l1
    setattr(TrainConfig, _name, property(
        lambda self, f=_field: getattr(self.loss_settings, f),
        lambda self, value, f=_field: setattr(self, "loss_settings", replace(self.loss_settings, **{f: value})),
        doc=f"``loss_settings.{_field}``"))
del _name, _field


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
    x_t: torch.Tensor  # the latent the step was computed on (edited rows, detached)
    net: "DeltaNet"


@dataclass
class TrainResult:
    delta_net: DeltaNet
    output: Path
    steps: int  # optimizer steps done in total
    t_edit: int
    t_boost: int
    history: list = field(default_factory=list)  # one dict per step: step, epoch, t, loss, clip, l1
    seconds: float = 0.0
    calibration: object = None  # the StrengthCalibration baked into delta_net (None: f_t as trained)


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


def _training_images(profile, config: TrainConfig, images, size: int, progress: bool) -> torch.Tensor:
    if images is None:
        x0 = sample_training_images(profile, config.n_images, n_steps=config.n_steps, seed=config.seed,
                                    image_size=size, progress=progress)
    elif isinstance(images, torch.Tensor):
        x0 = check_images(images, "images", channels=3).detach().float().cpu()
    else:
        from ..images import load_images

        x0, _ = load_images(images, size)
    if tuple(x0.shape[-2:]) != (size, size):
        raise ValueError(f"images: expected {size}×{size} images, got {tuple(x0.shape)}")
    return x0


# --------------------------------------------------------------------------------------------
# Checkpoints and resuming
# --------------------------------------------------------------------------------------------
def _save_checkpoint(run: "_Run") -> None:
    """f_t for users (safetensors + JSON), then f_t with the optimizer and the position as ONE atomic file."""
    net, pos = run.net, run.pos
    for p in net.parameters():
        if not torch.isfinite(p).all():  # never overwrite a good checkpoint with broken weights
            raise TrainingDiverged(f"f_t's weights are not finite at step {pos['step']}; checkpoint not written")
    net.save(run.output, **run.meta, training={**run.config.to_dict(), "steps_done": pos["step"],
                                               "epochs_done": pos["epoch"]})
    state = {"position": {k: v for k, v in pos.items() if k != "latent"}, "latent": pos.get("latent"),
             "net": {k: v.detach().cpu() for k, v in net.state_dict().items()}, "optimizer": run.opt.state_dict(),
             "config": run.config.to_dict(), "images": run.x0_all.detach().cpu(), "history": run.history,
             "model_id": run.meta["model_id"]}
    tmp = run.output / (STATE_NAME + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, run.output / STATE_NAME)
    (run.output / HISTORY_NAME).write_text(json.dumps(run.history))
    run.last_save = (time.monotonic(), pos["step"])


def _load_state(output: Path) -> dict:
    try:
        return torch.load(output / STATE_NAME, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{output / STATE_NAME}: cannot read the training state to resume from ({exc})") from None


def _resume_state(profile, config: TrainConfig, output: Path, resume: bool) -> tuple[dict | None, TrainConfig]:
    """(saved state or None, the configuration to train with): the saved one when resuming (only ``epochs``
    may grow), else ``config`` itself. The caller's object is never changed."""
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
        return state, replace(saved, epochs=max(saved.epochs, config.epochs), precision=config.precision,
                              channels_last=config.channels_last, compile=config.compile)
    if resume:
        print(f"[asyrp_lib.core.train] no checkpoint in {output} to resume from: starting a new run", file=sys.stderr)
    elif (output / WEIGHTS_NAME).is_file() or (output / STATE_NAME).is_file():
        raise ValueError(f"output: {output} already holds a trained direction; resume it (resume=True, "
                         f"asyrp train --resume) or choose another folder")
    return None, replace(config)


def _kept(output: Path) -> str:
    if (output / WEIGHTS_NAME).is_file() and (output / META_NAME).is_file():
        return f"The last good checkpoint in {output} is kept."
    return "No checkpoint had been written yet."


# --------------------------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------------------------
@dataclass
class _Run:
    """Everything one training run carries between its parts."""

    profile: object
    hs: HSpaceUNet  # the profile's U-Net with the run's speed options
    config: TrainConfig
    output: Path
    x0_all: torch.Tensor
    x_T_all: torch.Tensor
    timesteps: list
    t_edit: int
    t_boost: int
    net: DeltaNet
    opt: torch.optim.Optimizer
    clip_loss: object
    meta: dict
    pos: dict
    history: list
    callback: Callable | None = None
    bar: object = None
    last_save: tuple = (0.0, 0)

    @property
    def edit_steps(self) -> list[tuple[int, int]]:
        pairs = zip(self.timesteps, ddim.previous_timesteps(self.timesteps))
        return [(t, tp) for t, tp in pairs if t >= self.t_edit]

    def save_due(self) -> bool:
        seconds, step = self.last_save
        c = self.config
        return ((c.save_every_steps > 0 and self.pos["step"] - step >= c.save_every_steps)
                or (c.save_every_seconds > 0 and time.monotonic() - seconds >= c.save_every_seconds))


def _intervals(profile, config: TrainConfig, x0_all, timesteps, cache_root: Path, progress: bool) -> tuple[int, int]:
    """t_edit / t_boost: the configuration's, the rest from the LPIPS curves (find_intervals clamps t_boost)."""
    t_edit, t_boost = config.t_edit, config.t_boost
    if t_edit is None or t_boost is None:
        found = find_intervals(profile, x0_all, config.source, config.target, edit_lpips=config.edit_lpips,
                               boost_lpips=config.boost_lpips, points=config.interval_points, t_edit=t_edit,
                               cache_dir=cache_root / "intervals", progress=progress)
        print(f"[asyrp_lib.core.train] intervals{' (cached)' if found.cached else ''}: t_edit = {found.t_edit}, "
              f"t_boost = {found.t_boost}", file=sys.stderr)
        t_edit, t_boost = found.t_edit, (found.t_boost if t_boost is None else t_boost)
    return check_intervals(t_edit, t_boost, timesteps, profile.schedule.num_train_timesteps)


def _inversions(profile, hs: HSpaceUNet, x0_all, timesteps, cache_root: Path, progress: bool,
                batch_size: int) -> torch.Tensor:
    """x_T of every training image, inverted ``batch_size`` images at a time (cached, per precision)."""
    cache = InversionCache(cache_root / "inversions")
    key = model_key(profile.model_id, profile.unet) + ("" if hs.precision == "fp32" else f"#{hs.precision}")
    x_T = torch.cat([cache.invert(hs, x0.to(hs.device, hs.dtype), timesteps, profile.schedule, model=key,
                                  progress=progress, refine=getattr(profile, "invert_refine", 0)).cpu()
                     for x0 in x0_all.split(batch_size)])
    if progress:
        print(f"[asyrp_lib.core.train] inversions: {cache.hits} cached, {cache.misses} computed", file=sys.stderr)
    return x_T


def _setup(profile, config: TrainConfig, output: Path, images, state, cache_root: Path, progress: bool) -> _Run:
    """Training images, intervals, inversions, f_t and its optimizer, fresh or from ``state``."""
    from .clip_loss import DirectionalCLIPLoss

    size = int(config.image_size or profile.image_size)
    timesteps = ddim.timesteps(config.n_steps, profile.schedule.num_train_timesteps)
    x0_all = state["images"] if state is not None else _training_images(profile, config, images, size, progress)
    t_edit, t_boost = _intervals(profile, config, x0_all, timesteps, cache_root, progress)
    hs = HSpaceUNet(profile.unet, precision=config.precision, channels_last=config.channels_last,
                    compile=config.compile)
    x_T_all = _inversions(profile, hs, x0_all, timesteps, cache_root, progress, config.batch_size)
    meta = {"model_id": profile.model_id, "source": config.source, "target": config.target, "t_edit": t_edit,
            "t_boost": t_boost, "steps": config.n_steps, "image_size": size}
    with torch.random.fork_rng(devices=[]):  # seeded initialisation, the global RNG left alone
        torch.manual_seed(config.seed)
        net = DeltaNet(unet_h_shape(profile.unet, size), hidden=config.hidden, metadata=dict(meta))
    if state is not None:
        net.load_state_dict(state["net"])
    net = net.to(device=hs.device, dtype=hs.dtype).train()
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    if state is not None:
        opt.load_state_dict(state["optimizer"])
    pos = dict(state["position"]) if state is not None else {"step": 0, "epoch": 0, "batch": 0, "t_index": 0}
    pos["latent"] = state.get("latent") if state is not None else None
    clip_loss = DirectionalCLIPLoss(profile.clip, config.source, config.target)
    return _Run(profile=profile, hs=hs, config=config, output=output, x0_all=x0_all, x_T_all=x_T_all,
                timesteps=timesteps, t_edit=t_edit, t_boost=t_boost, net=net, opt=opt, clip_loss=clip_loss, meta=meta,
                pos=pos, history=list(state["history"]) if state is not None else [],
                last_save=(time.monotonic(), pos["step"]))


def _train_batch(run: _Run, epoch: int, b: int, idx: torch.Tensor) -> None:
    """The edit steps of one batch, from the start or (resuming) from the saved position and latents."""
    hs, config, pos = run.hs, run.config, run.pos
    loss = config.loss
    x0 = run.x0_all[idx].to(hs.device, hs.dtype)
    with torch.no_grad():
        src = run.clip_loss.encoder.encode_image(x0)
    resuming = epoch == pos["epoch"] and b == pos["batch"] and pos["t_index"] > 0
    x_T = run.x_T_all[idx].to(hs.device, hs.dtype)
    x = pos["latent"].to(hs.device, hs.dtype) if resuming else (
        torch.cat([x_T, x_T]) if loss.needs_reconstruction else x_T)
    edit, n = DeltaH(run.net), idx.numel()
    for j in range(pos["t_index"] if resuming else 0, len(run.edit_steps)):
        t, t_prev = run.edit_steps[j]
        step = compute_step(hs, x, t, t_prev, j, run.profile.schedule, phase="edit", n=n, edit=edit, grad=True,
                            same_rows=j == 0)  # at the first step both halves of x are x_T
        where = f"step {pos['step'] + 1} (epoch {epoch + 1}, t = {t})"
        try:
            values = loss_step(step, loss, run.clip_loss, src, run.opt, list(run.net.parameters()), where=where)
        except TrainingDiverged as exc:
            raise TrainingDiverged(f"{exc} {_kept(run.output)} Try a smaller learning rate (lr).") from None
        x = advance(step, follow_edit=config.trajectory == "edited")  # eq. (4), or the unedited path
        pos.update(step=pos["step"] + 1, epoch=epoch, batch=b, t_index=j + 1, latent=x.detach().cpu())
        run.history.append({"step": pos["step"], "epoch": epoch, "t": t, **values})
        if run.bar is not None:
            run.bar.update(1)
            run.bar.set_postfix(loss=f"{values['loss']:.4f}", clip=f"{values['clip']:.4f}",
                                l1=f"{values['l1']:.4f}", t=t)
        if run.callback is not None:
            run.callback(TrainStep(step=pos["step"], epoch=epoch, batch=b, indices=idx.tolist(), t=t,
                                   loss=values["loss"], loss_clip=values["clip"], loss_l1=values["l1"],
                                   x_t=step.x_t[:n].detach(), net=run.net))
        if run.save_due():
            _save_checkpoint(run)
    pos.update(epoch=epoch, batch=b + 1, t_index=0, latent=None)


def _train_epochs(run: _Run) -> None:
    n = run.x0_all.shape[0]
    bs = run.config.batch_size
    n_batches = -(-n // bs)
    for epoch in range(run.pos["epoch"], run.config.epochs):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(run.config.seed + epoch))
        first = run.pos["batch"] if epoch == run.pos["epoch"] else 0
        for b in range(first, n_batches):
            _train_batch(run, epoch, b, order[b * bs:(b + 1) * bs])
        run.pos.update(epoch=epoch + 1, batch=0, t_index=0, latent=None)
        _save_checkpoint(run)


def train_direction(profile, config: TrainConfig, output, *, images=None, resume: bool = False,
                    progress: bool = True, callback: Callable[[TrainStep], None] | None = None,
                    **keywords) -> TrainResult:
    """Train f_t for ``config.source`` → ``config.target`` on ``profile`` and write it to the folder ``output``.

    ``images``: training images — a tensor (N, 3, S, S) in [-1, 1], an image file or folder, or None to
    sample ``config.n_images`` from the model. ``resume``: continue from the checkpoint in ``output``
    (its settings are kept; only ``config.epochs`` may grow). ``callback(TrainStep)`` runs after every
    optimizer step; raising ``KeyboardInterrupt`` there (or pressing Ctrl-C) writes a checkpoint first.
    ``cache_dir``: root of the inversion and interval caches (default ``$ASYRP_CACHE`` or ``~/.cache/asyrp``).
    ``config`` itself is left unchanged (the result and the checkpoint say which t_edit / t_boost were used).
    ``metadata``: extra entries for the checkpoint's metadata (e.g. the toy attribute it should change).
    ``cache_dir`` and ``metadata`` are given by name.
    """
    extra = grouped_options("train_direction", keywords, {}, also=("cache_dir", "metadata"))
    cache_dir, metadata = extra.get("cache_dir"), extra.get("metadata")
    output = Path(output)
    cache_root = Path(cache_dir) if cache_dir is not None else default_cache_root()
    state, config = _resume_state(profile, config, output, resume)
    config = config.resolved(profile).validate()
    run = _setup(profile, config, output, images, state, cache_root, progress)
    run.meta.update(metadata or {})
    total = config.epochs * -(-run.x0_all.shape[0] // config.batch_size) * len(run.edit_steps)
    run.callback = callback
    run.bar = progress_bar(range(total), enabled=progress, desc=f"training f_t: {config.target!r}", total=total,
                           initial=run.pos["step"]) if progress else None
    start = time.perf_counter()
    try:
        _train_epochs(run)
    except KeyboardInterrupt:
        _save_checkpoint(run)
        print(f"[asyrp_lib.core.train] interrupted at step {run.pos['step']}: checkpoint written to {output}; "
              f"resume with resume=True (asyrp train --resume)", file=sys.stderr)
        raise
    finally:
        if run.bar is not None:
            run.bar.close()
    run.net.eval()
    net, calibration = run.net, None
    if config.strength_share:
        net, calibration = _choose_strength(run, progress)
    return TrainResult(delta_net=net, output=output, steps=run.pos["step"], t_edit=run.t_edit,
                       t_boost=run.t_boost, history=run.history, seconds=time.perf_counter() - start,
                       calibration=calibration)


def _choose_strength(run: _Run, progress: bool):
    """The strength chosen on fresh samples (:func:`asyrp_lib.core.strength.calibrate_strength`), baked into a copy
    of f_t that replaces the direction in the output folder; ``train_state.pt`` keeps f_t as trained (resuming
    trains on from it and chooses again). (the copy, the calibration)."""
    from .strength import CALIBRATION_SEED, calibrate_strength

    c = run.config
    try:
        cal = calibrate_strength(run.profile, run.net, c.source, c.target, t_edit=run.t_edit, t_boost=run.t_boost,
                                 n_steps=c.n_steps, share=c.strength_share, n=c.strength_samples,
                                 seed=CALIBRATION_SEED + c.seed, image_size=run.meta["image_size"],
                                 precision=c.precision, progress=progress)
    except KeyboardInterrupt:
        print(f"[asyrp_lib.core.train] interrupted while choosing the strength: {run.output} holds f_t as trained "
              f"(strength 1 unchosen); resume (asyrp train --resume) to choose it", file=sys.stderr)
        raise
    print(f"[asyrp_lib.core.train] {cal.describe()} ({cal.seconds:.0f} s)", file=sys.stderr)
    net = run.net.scaled(cal.strength)
    net.save(run.output, strength_calibration=cal.to_dict())
    return net, cal
