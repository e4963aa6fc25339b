"""Profiles: one code path, three sizes of model.

=============  ===============================================  ==========================  ====================
profile        diffusion model (``UNet2DModel``)                 CLIP                        where it runs
=============  ===============================================  ==========================  ====================
``celebahq``   ``google/ddpm-ema-celebahq-256`` (h: 512×8×8)     ``openai/clip-vit-base-     Colab GPU; model hub
                                                                 patch16``
``toy``        the course's toy-face DDPM in ``data/``           the toy CLIP in ``data/``   anywhere, offline
``tiny``       random weights, built from a config in seconds    random, small               unit tests
=============  ===============================================  ==========================  ====================

``load_profile(name)`` also takes a hub id or a local folder of any ``UNet2DModel`` with a mid block
(``google/ddpm-ema-church-256``, a folder written by ``save_pretrained`` …); such a profile uses the
default CLIP. CLIP and LPIPS load lazily, on first use. ``default_profile_name()`` reads
``ASYRP_PROFILE`` and otherwise picks ``celebahq`` with a CUDA GPU and ``toy`` without;
``ASYRP_CLIP`` (a CLIP hub id or folder) and ``ASYRP_STEPS`` (DDIM steps) override a profile's CLIP and
default steps, so that the notebooks run unedited against other models or at fewer steps.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from .._utils import data_dir, resolve_device
from .hub import HubUnavailableError, from_pretrained_fast
from ..core.ddim import Schedule
from ..core.hspace import HSpaceUNet, h_shape
from ..core.train import PAPER_RECIPE, Recipe  # noqa: F401  (re-exported: the paper's recipe is the core's)

__all__ = ["Profile", "ProfileSpec", "Recipe", "PAPER_RECIPE", "PROFILES", "load_profile", "load_clip", "default_profile_name", "resolve_device",
           "HubUnavailableError", "CONFIG_DIR", "data_dir"]

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


# --------------------------------------------------------------------------------------------
# Training recipes
# --------------------------------------------------------------------------------------------
#: The toy world's recipe: of the settings tried on 16 sampled faces for 1 epoch, measured on 32 held-out faces
#: lacking the target (docs/toy_recipe.md), the one whose worst result over "face with glasses" and
#: "smiling face" is best at strength 1: glasses 0.72 success / 0.94 others kept, smiling 0.91 / 0.72. No
#: training setting reached 0.8 on all four numbers: the same run adds glasses too weakly and a smile too
#: strongly. So after training the strength is chosen on 64 fresh samples (asyrp_lib.core.strength): where the
#: toy CLIP reads the target on 0.8 of the samples that lacked it, the share the course asks of an edit.
TOY_RECIPE = Recipe("toy", lr=1e-3, lambda_l1=30.0, t_edit=300, l1_spare=0.4, strength_share=0.8,
                    note="measured on the toy world: 16 sampled faces, 1 epoch, 32 held-out faces")


# --------------------------------------------------------------------------------------------
# Profile specifications
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProfileSpec:
    """What a named profile is made of (fields say what they change)."""

    name: str
    unet: str  # hub id, local folder, or "random:<config.json>" for random weights
    clip: str  # hub id, local folder, or "random" for a small random CLIP
    image_size: int  # side of the images the U-Net works on
    default_steps: int  # DDIM steps the notebooks use by default
    lpips_random_backbone: bool = False  # True only for unit tests
    edit_lpips: float = 0.33  # t_edit: where LPIPS(x, P_t) reaches this (the paper's value)
    boost_lpips: float = 1.2  # t_boost: where LPIPS(x, x_t) reaches this (the paper's value, for 256² images)
    invert_refine: int = 1  # fixed-point iterations per DDIM inversion step (ddim.invert(refine=…); 0: plain)
    prompt_pairs: tuple = (("face", "smiling face"),)  # (source, target) pairs shown by default
    keep_prompts: tuple = ()  # (attribute, (prompt, …)) groups CLIP reads zero-shot: the CLIP check's keep test
    recipe: Recipe = PAPER_RECIPE  # how f_t is trained unless told otherwise
    description: str = ""


# The attributes whose CLIP reading a checked edit keeps (``asyrp_lib.beyond.retry``, ``keep=``): one group of prompts
# per attribute, read zero-shot (the prompt nearest the image). The toy groups are the toy CLIP's zero-shot
# prompts (data/MODEL_CARD.md: 1.00 accuracy on renders); "a bald face" sits in the hair-colour group too, so a
# bald head reads as bald there instead of as a random colour. The CelebA-HQ groups are plain CLIP prompts for
# attributes of that data set, not measured here (no hub on the machines this project is built on).
TOY_KEEP_PROMPTS = (
    ("smile", ("a frowning face", "a neutral face", "a smiling face")),
    ("eyes", ("a face with open eyes", "a face with closed eyes")),
    ("glasses", ("a face without glasses", "a face with glasses")),
    ("hair", ("a bald face", "a face with short hair", "a face with long hair")),
    ("hair_color", ("a bald face", "a face with black hair", "a face with brown hair", "a face with blond hair",
                    "a face with red hair")),
    ("skin", ("a face with light skin", "a face with medium skin", "a face with dark skin")),
    ("background", ("a face on a blue background", "a face on a green background", "a face on a gray background",
                    "a face on a purple background")),
)
CELEBAHQ_KEEP_PROMPTS = (
    ("smile", ("a photo of a person who is not smiling", "a photo of a smiling person")),
    ("glasses", ("a photo of a person without glasses", "a photo of a person wearing glasses")),
    ("gender", ("a photo of a man", "a photo of a woman")),
    ("age", ("a photo of a young person", "a photo of an old person")),
    ("hair_color", ("a photo of a person with black hair", "a photo of a person with brown hair",
                    "a photo of a person with blond hair", "a photo of a person with gray hair")),
)

PROFILES: dict[str, ProfileSpec] = {
    "celebahq": ProfileSpec(
        name="celebahq",
        unet="google/ddpm-ema-celebahq-256",
        clip="openai/clip-vit-base-patch16",
        image_size=256,
        default_steps=40,
        prompt_pairs=(("face", "smiling face"), ("face", "face with glasses"), ("person", "young person"),
                      ("face", "angry face")),
        keep_prompts=CELEBAHQ_KEEP_PROMPTS,
        description="CelebA-HQ 256×256 faces (hub weights; GPU recommended)",
    ),
    "toy": ProfileSpec(
        name="toy",
        unet="data:toy_ddpm",
        clip="data:toy_clip",
        image_size=64,
        default_steps=20,
        prompt_pairs=(("face", "smiling face"), ("face", "face with glasses"), ("face", "face with closed eyes"),
                      ("face", "face with red hair")),
        # The toy DDPM's P_t stays sharp far longer than a CelebA-HQ model's (simple faces): LPIPS(x, P_t)
        # is 0.05 at t = 600 and reaches the paper's 0.33 only near t = 950 (8 dev faces), where too few
        # steps are left to edit. 0.06 (× the prompts' cosine) puts t_edit near 600, 40 % of the way
        # through the reverse process as in the paper's CelebA-HQ intervals; see data/MODEL_CARD.md.
        edit_lpips=0.06,
        # LPIPS(x, x_t) of 64×64 toy faces levels off at about 1.1, so 1.2 is never reached; 0.8 gives
        # t_boost ≈ 240, and the strength-0 reconstruction through eq. 6 with that boost keeps the
        # faces (others kept 0.97, LPIPS 0.013 on 32 held-out faces).
        boost_lpips=0.8,
        invert_refine=2,
        keep_prompts=TOY_KEEP_PROMPTS,
        recipe=TOY_RECIPE,
        description="the toy face world, 64×64, trained weights shipped in data/ (offline, CPU)",
    ),
    "tiny": ProfileSpec(
        name="tiny",
        unet="random:tiny_unet.json",
        clip="random",
        image_size=32,
        default_steps=10,
        lpips_random_backbone=True,
        boost_lpips=0.4,  # 32×32 images: LPIPS(x, x_t) levels off near 0.5
        invert_refine=0,  # random weights: the fixed point need not exist; unit tests pass refine themselves
        keep_prompts=TOY_KEEP_PROMPTS,  # read by a random CLIP: tests the mechanism only
        description="random weights, for unit tests only",
    ),
}


# --------------------------------------------------------------------------------------------
# The loaded profile
# --------------------------------------------------------------------------------------------
@dataclass
class Profile:
    """The models of one profile, on one device. ``clip`` and ``lpips`` load on first use."""

    name: str
    unet: torch.nn.Module  # a diffusers UNet2DModel, eval mode
    schedule: Schedule
    image_size: int
    default_steps: int
    prompt_pairs: list
    device: torch.device
    model_id: str  # where the U-Net came from
    edit_lpips: float = 0.33  # LPIPS(x, P_t) threshold that selects t_edit
    boost_lpips: float = 1.2  # LPIPS(x, x_t) threshold that selects t_boost
    invert_refine: int = 0  # fixed-point iterations of each inversion step (asyrp_lib.core.ddim.invert)
    keep_prompts: dict = field(default_factory=dict)  # {attribute: [prompt, …]}: what a checked edit keeps (retry)
    recipe: Recipe = PAPER_RECIPE  # how f_t is trained unless told otherwise (asyrp train, TrainConfig)
    _clip_loader: Callable = field(repr=False, default=None)
    _lpips_loader: Callable = field(repr=False, default=None)
    _clip: object = field(repr=False, default=None)
    _lpips: object = field(repr=False, default=None)
    _hspace: HSpaceUNet | None = field(repr=False, default=None)

    @property
    def clip(self):
        """The profile's CLIP (``asyrp_lib.models.clip.CLIPEncoder``), loaded on first use."""
        if self._clip is None:
            self._clip = self._clip_loader()
        return self._clip

    @property
    def lpips(self):
        """LPIPS (AlexNet) as a callable ``(x, y) -> (N,)``, loaded on first use."""
        if self._lpips is None:
            self._lpips = self._lpips_loader()
        return self._lpips

    @property
    def hspace(self) -> HSpaceUNet:
        """The U-Net wrapped to read and edit its bottleneck h_t."""
        if self._hspace is None:
            self._hspace = HSpaceUNet(self.unet)
        return self._hspace

    @property
    def is_toy(self) -> bool:
        """Whether this is the toy face world (rendered faces with known attributes, the oracle, toy captions)."""
        return self.name == "toy"

    def source_images(self, n: int, seed: int = 0, *, steps: int | None = None, progress: bool = True,
                      kind: str | None = None) -> torch.Tensor:
        """``n`` images of this profile's own world to edit, the same for the same ``seed``: rendered toy faces
        (``toy``), otherwise faces *sampled from the profile's model* (DDIM from seeded noise, the profile's
        clipping; ``steps``: default the profile's). ``kind``: ``"render"`` or ``"sample"`` to choose (renders
        exist only in the toy world). (n, 3, S, S) in [-1, 1] on the profile's device."""
        from ..core import ddim

        if kind not in (None, "render", "sample"):
            raise ValueError(f"kind: expected 'render', 'sample' or None, got {kind!r}")
        if kind == "render" and not self.is_toy:
            raise ValueError(f"kind: only the toy profile has rendered faces, not {self.name!r}; use kind='sample'")
        if (kind or ("render" if self.is_toy else "sample")) == "render":
            from ..toy import toyworld

            return toyworld.render(toyworld.sample_attributes(n, seed=seed), size=self.image_size, device=self.device)
        g = torch.Generator().manual_seed(int(seed))
        x_T = torch.randn(n, 3, self.image_size, self.image_size, generator=g)
        ts = ddim.timesteps(int(steps or self.default_steps), self.schedule.num_train_timesteps)
        return ddim.sample(self.unet, x_T, ts, self.schedule, progress=progress).clamp(-1, 1)

    @property
    def h_shape(self) -> tuple[int, int, int]:
        return h_shape(self.unet, self.image_size)

    def __str__(self) -> str:
        n = sum(p.numel() for p in self.unet.parameters())
        return (f"profile {self.name!r}: U-Net {self.model_id} ({n / 1e6:.1f} M parameters), "
                f"images {self.image_size}×{self.image_size}, h {'×'.join(map(str, self.h_shape))}, "
                f"device {self.device}")


def default_profile_name() -> str:
    """``$ASYRP_PROFILE`` if set, else ``celebahq`` when a CUDA GPU is present and ``toy`` otherwise."""
    name = os.environ.get("ASYRP_PROFILE", "").strip()
    if name:
        return name
    return "celebahq" if torch.cuda.is_available() else "toy"


# --------------------------------------------------------------------------------------------
# Loading from the hub, a local folder, data/ or a config
# --------------------------------------------------------------------------------------------
def _load_unet(spec_unet: str):
    """Returns (unet, schedule, model_id)."""
    from diffusers import DDPMScheduler, UNet2DModel

    from .unets import load_folder

    if spec_unet.startswith("random:"):
        cfg_path = CONFIG_DIR / spec_unet.split(":", 1)[1]
        cfg = json.loads(cfg_path.read_text())
        torch.manual_seed(0)  # the tiny profile is the same model every time
        unet = UNet2DModel.from_config(cfg)
        return unet, Schedule.linear(), f"random ({cfg_path.name})"
    if spec_unet.startswith("data:"):
        folder = data_dir() / spec_unet.split(":", 1)[1]
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"The toy DDPM weights are missing: {folder}/config.json was not found. They are made by "
                f"scripts/train_toy_ddpm.py (a GPU job) and shipped in data/toy_ddpm/. Until they exist, use "
                f"the 'tiny' profile (random weights) or 'celebahq' (model hub)."
            )
        unet, schedule = load_folder(folder)
        return unet, schedule, "toy DDPM (data/toy_ddpm)"
    _check_unet_config(spec_unet)
    unet = from_pretrained_fast(UNet2DModel, spec_unet, "diffusion model", low_cpu_mem_usage=False)
    try:
        scheduler = from_pretrained_fast(DDPMScheduler, spec_unet, "noise scheduler")
        schedule, prediction = Schedule.from_scheduler(scheduler), scheduler.config.prediction_type
    except (OSError, ValueError):
        schedule, prediction = Schedule.linear(), "epsilon"  # the DDPM default these checkpoints were trained with
    if prediction != "epsilon":  # a v-prediction model: the same weights, returning ε (asyrp_lib.models.unets)
        from .unets import VPredictionUNet2DModel

        if prediction != "v_prediction":
            raise ValueError(f"{spec_unet}: the scheduler's prediction_type is {prediction!r}; this library "
                             f"supports 'epsilon' and 'v_prediction' models")
        unet = from_pretrained_fast(VPredictionUNet2DModel, spec_unet, "diffusion model", low_cpu_mem_usage=False)
        unet.set_alphas_cumprod(schedule.alphas_cumprod)
    return unet, schedule, spec_unet


#: The ``_class_name`` values in config.json that load as this course's U-Net.
UNET_CLASSES = ("UNet2DModel", "VPredictionUNet2DModel")


class _UNetConfig:
    """``from_pretrained`` that reads only a U-Net's config.json (through ``from_pretrained_fast``: offline-safe)."""

    @staticmethod
    def from_pretrained(model_id, **kw):
        from diffusers import UNet2DModel

        return UNet2DModel.load_config(model_id, **kw)


def _check_unet_config(model_id: str) -> None:
    """Refuse, before any weights load, a hub id or folder whose config.json is missing or describes another
    class than a ``UNet2DModel`` (diffusers would otherwise build a random U-Net from it without a word)."""
    folder = Path(model_id).expanduser()
    where = f"the folder {str(folder)!r}" if folder.is_dir() else f"the hub model {model_id!r}"
    accepted = ("a folder written by UNet2DModel.save_pretrained (config.json + diffusion_pytorch_model.safetensors) "
                "or a hub id of one, such as 'google/ddpm-ema-celebahq-256'")
    if folder.is_dir() and not (folder / "config.json").is_file():
        hint = ""
        if (folder / "model_index.json").is_file() and (folder / "unet" / "config.json").is_file():
            hint = f" It is a pipeline folder: pass its U-Net, {str(folder / 'unet')!r}."
        raise ValueError(f"name: {where} has no config.json, so it is not a diffusers model; expected {accepted}.{hint}")
    try:
        config = from_pretrained_fast(_UNetConfig, model_id, "diffusion model")
    except HubUnavailableError:
        raise
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"name: cannot read the config.json of {where} ({first}); expected {accepted}") from None
    config = config if isinstance(config, dict) else {}
    cls = config.get("_class_name") or next(iter(config.get("architectures") or []), None)  # diffusers, transformers
    if cls not in UNET_CLASSES:
        raise ValueError(f"name: {where} holds a model of class {cls or 'unknown'} (from its config.json), not "
                         f"a UNet2DModel; this course edits the h-space of a diffusers UNet2DModel: expected {accepted}")


def _clip_loader(spec_clip: str, device: torch.device) -> Callable:
    def load():
        from .clip import CLIPEncoder

        if spec_clip == "random":
            return _random_clip(device)
        if spec_clip.startswith("data:"):
            folder = data_dir() / spec_clip.split(":", 1)[1]
            if not (folder / "config.json").is_file():
                raise FileNotFoundError(f"The toy CLIP is missing: {folder}/config.json was not found; it is made by "
                                        f"scripts/train_toy_clip.py and shipped in data/toy_clip/.")
            return CLIPEncoder.from_pretrained(str(folder), device=device)
        return CLIPEncoder.from_pretrained(spec_clip, device=device)

    return load


def _random_clip(device: torch.device):
    """A small random CLIP with a real BPE tokenizer: the ``tiny`` profile's."""
    from .clip import CLIPEncoder, random_clip

    model, tokenizer = random_clip(image_size=32, patch_size=8, seed=0)
    return CLIPEncoder(model.to(device), tokenizer)


def env_clip() -> str | None:
    """``$ASYRP_CLIP`` (a CLIP hub id or local folder), or None when unset or blank."""
    return os.environ.get("ASYRP_CLIP", "").strip() or None


def env_steps() -> int | None:
    """``$ASYRP_STEPS`` as a positive int, or None when unset or blank; anything else is a ``ValueError``."""
    raw = os.environ.get("ASYRP_STEPS", "").strip()
    if not raw:
        return None
    try:
        steps = int(raw)
    except ValueError:
        steps = 0
    if steps < 1:
        raise ValueError(f"ASYRP_STEPS: expected a positive whole number of DDIM steps, got {raw!r}")
    return steps


def _spec_for(name: str | None) -> ProfileSpec:
    """The spec of a profile name (``None``: ``default_profile_name()``), or of a hub id / local U-Net folder
    (a profile of that model with the ``celebahq`` defaults: its CLIP, steps and prompts)."""
    if name is None:
        name = default_profile_name()
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"name: expected a profile name ({', '.join(PROFILES)}), a hub id or a folder; got {name!r}")
    name = name.strip()
    if name in PROFILES:
        return PROFILES[name]
    if Path(name).expanduser().is_dir() or (name.count("/") == 1 and not name.startswith((".", "/", "~"))):
        default = PROFILES["celebahq"]
        return ProfileSpec(name=name, unet=name, clip=default.clip, image_size=0, default_steps=default.default_steps,
                           prompt_pairs=default.prompt_pairs, keep_prompts=default.keep_prompts,
                           description=f"U-Net {name}")
    raise ValueError(f"name: unknown profile {name!r}; expected one of {', '.join(PROFILES)}, "
                     f"a hub id like 'google/ddpm-ema-church-256', or an existing local folder")


def load_profile(name: str | None = None, device=None, *, clip: str | None = None) -> Profile:
    """Load a profile by name (``celebahq``, ``toy``, ``tiny``), hub id or local U-Net folder.

    ``name=None`` uses ``default_profile_name()`` (``$ASYRP_PROFILE``); ``clip`` (hub id or folder) replaces the
    profile's CLIP. The U-Net is loaded now (eval mode, on ``device``); CLIP and LPIPS when first used.
    Two environment variables change any profile, for running the notebooks unedited against other models
    or at reduced size: ``$ASYRP_CLIP`` (a CLIP hub id or folder) is the CLIP when ``clip`` is not given, and
    ``$ASYRP_STEPS`` (a positive int) replaces ``default_steps``, the DDIM steps the notebooks use.
    """
    steps = env_steps()  # checked first: a bad value fails before any model loads
    spec = _spec_for(name)
    name = spec.name
    dev = resolve_device(device)
    unet, schedule, model_id = _load_unet(spec.unet)
    try:
        HSpaceUNet(unet)  # refuses U-Nets without a mid block (no h-space), with a clear error
    except ValueError as exc:
        raise ValueError(f"name: {name!r}: {exc}") from None
    unet = unet.eval().requires_grad_(False).to(dev)
    cfg_size = unet.config.sample_size
    image_size = spec.image_size or (cfg_size if isinstance(cfg_size, int) else cfg_size[0])

    def lpips_loader():
        import warnings

        from .perceptual import load_lpips

        with warnings.catch_warnings():  # the tiny profile is random by design; load_lpips still logs it
            if spec.lpips_random_backbone:
                warnings.simplefilter("ignore", UserWarning)
            return load_lpips("alex", device=dev, random_backbone=spec.lpips_random_backbone)

    return Profile(name=spec.name, unet=unet, schedule=schedule, image_size=image_size,
                   default_steps=steps or spec.default_steps, prompt_pairs=list(spec.prompt_pairs), device=dev,
                   model_id=model_id, edit_lpips=spec.edit_lpips, boost_lpips=spec.boost_lpips,
                   invert_refine=spec.invert_refine, keep_prompts={k: list(v) for k, v in spec.keep_prompts},
                   recipe=spec.recipe,
                   _clip_loader=_clip_loader(clip or env_clip() or spec.clip, dev), _lpips_loader=lpips_loader)


def load_clip(name: str | None = None, device=None):
    """Only the CLIP of a profile (``toy``, ``celebahq``, ``tiny``; default and ``$ASYRP_CLIP`` as ``load_profile``).

    For work that needs no diffusion model, such as studying the directional loss. A hub id or U-Net folder
    (a profile of another model) gets the default CLIP, as in ``load_profile``.
    """
    return _clip_loader(env_clip() or _spec_for(name).clip, resolve_device(device))()
