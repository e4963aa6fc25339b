r"""CLIP encoders: loading CLIP (a hub id or a local folder) and embedding images and texts.

The directional CLIP loss of eq. 3 that uses these embeddings is :mod:`asyrp_lib.core.clip_loss` (its names are
re-exported here).

:class:`CLIPEncoder` wraps a ``transformers.CLIPModel`` and its tokenizer (hub id such as
``openai/clip-vit-base-patch16``, or a local folder such as the toy CLIP). Its ``encode_image`` takes
images in [-1, 1] of any size and does CLIP's preprocessing (shortest-side resize, centre crop,
mean/std normalisation) in torch, so gradients reach the pixels.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .._utils import check_prompts
from ..core.clip_loss import (DEFAULT_TEMPLATES, DirectionalCLIPLoss, directional_clip_loss,  # noqa: F401
                               directional_similarity)
from .hub import hub_error, hub_reachable

__all__ = [
    "CLIPEncoder",
    "DirectionalCLIPLoss",
    "DEFAULT_TEMPLATES",
    "DEFAULT_CLIP",
    "directional_clip_loss",
    "directional_similarity",
]

#: The ``celebahq`` profile's CLIP (the reference implementation's default).
DEFAULT_CLIP = "openai/clip-vit-base-patch16"

#: CLIP's image normalisation (OpenAI), used when a model folder has no ``preprocessor_config.json``.
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}  # PIL codes in preprocessor_config.json


def _features(out) -> torch.Tensor:
    """``get_*_features`` returns a tensor (transformers 4.x) or an output object (5.x)."""
    if isinstance(out, torch.Tensor):
        return out
    for key in ("text_embeds", "image_embeds", "pooler_output"):
        value = getattr(out, key, None)
        if isinstance(value, torch.Tensor):
            return value
    raise TypeError(f"unexpected CLIP feature output {type(out).__name__}")


class CLIPEncoder(nn.Module):
    """A frozen CLIP model with unit-norm ``encode_text`` and differentiable ``encode_image``.

    ``CLIPEncoder(model, tokenizer, image_size=None, mean=None, std=None, interpolation="bicubic")``:
    ``model`` is a ``transformers.CLIPModel`` (it is put in eval mode and its parameters frozen),
    ``tokenizer`` its tokenizer; ``image_size`` defaults to the vision config's, ``mean``/``std`` to
    OpenAI's. ``interpolation`` is the resize filter ("bicubic" like ``CLIPImageProcessor``, or
    "bilinear"); it is always antialiased. Use :meth:`from_pretrained` to load by hub id or folder.
    """

    def __init__(self, model, tokenizer, image_size: int | None = None, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, interpolation: str = "bicubic", name: str | None = None):
        super().__init__()
        if interpolation not in ("bilinear", "bicubic"):
            raise ValueError(f"interpolation must be 'bilinear' or 'bicubic', got {interpolation!r}")
        eos_model = getattr(model.config.text_config, "eos_token_id", None)
        eos_tok = getattr(tokenizer, "eos_token_id", None)
        if eos_model not in (None, 2) and eos_tok is not None and eos_model != eos_tok:
            # (eos_token_id == 2 is transformers' legacy setting: pool at the largest token id instead)
            raise ValueError(f"tokenizer.eos_token_id is {eos_tok} but model.config.text_config.eos_token_id is "
                             f"{eos_model}: CLIP pools the text at the end token, so every prompt would get the same "
                             f"embedding. Build the model's text_config with eos_token_id={eos_tok}.")
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.image_size = int(image_size or model.config.vision_config.image_size)
        self.interpolation = interpolation
        self.name = name or getattr(model.config, "_name_or_path", "") or "CLIPModel"
        self.register_buffer("mean", torch.tensor(mean or OPENAI_CLIP_MEAN, dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(std or OPENAI_CLIP_STD, dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)
        # The normalisation buffers follow the model: an encoder built around a model already on a GPU works there.
        first = next(iter(model.parameters()), None)
        if first is not None:
            self.mean, self.std = self.mean.to(first.device), self.std.to(first.device)
        self.max_length = int(model.config.text_config.max_position_embeddings)

    def train(self, mode: bool = True) -> "CLIPEncoder":  # noqa: D102 - frozen, always eval
        super().train(mode)
        self.model.eval()
        return self

    @property
    def device(self) -> torch.device:
        return self.mean.device

    @property
    def embed_dim(self) -> int:
        return int(self.model.config.projection_dim)

    # ------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike = DEFAULT_CLIP, device=None) -> "CLIPEncoder":
        """Load a CLIP model and tokenizer by hub id (from the local cache first) or from a local folder.

        A folder is read with ``save_pretrained`` layout; its ``preprocessor_config.json`` (if any) gives
        the image size, mean, std and resize filter. When a hub model is neither cached nor reachable, a
        ``HubUnavailableError`` names it and suggests the offline ``toy`` profile; nothing waits on the network
        for more than a few seconds.
        """
        from transformers import CLIPModel

        name = str(name_or_path)
        local = Path(name).expanduser()
        if local.is_dir():
            model = CLIPModel.from_pretrained(local)
            tokenizer = _load_tokenizer(local)
            proc = _read_processor_config(local / "preprocessor_config.json")
        elif name.startswith((".", "/", "~")) or name.count("/") > 1:
            raise FileNotFoundError(f"name_or_path: no folder {name!r} (expected a hub id like {DEFAULT_CLIP!r} "
                                    "or a folder saved with CLIPModel.save_pretrained)")
        else:
            model, tokenizer, proc = _load_from_hub(name)
        encoder = cls(model, tokenizer, image_size=proc.get("image_size"), mean=proc.get("mean"),
                      std=proc.get("std"), interpolation=proc.get("interpolation", "bicubic"), name=name)
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        return encoder.to(device)

    # ------------------------------------------------------------------------------------------
    def encode_text(self, texts: Sequence[str] | str) -> torch.Tensor:
        """Unit-norm text embeddings ``(N, D)`` for a list of N non-empty prompts."""
        texts = check_prompts(texts)
        tokens = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                                return_tensors="pt")
        feats = _features(self.model.get_text_features(input_ids=tokens["input_ids"].to(self.device),
                                                        attention_mask=tokens["attention_mask"].to(self.device)))
        return F.normalize(feats.float(), dim=-1)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``(N, 3, H, W)`` in [-1, 1] → CLIP pixel values: shortest side resized to ``image_size``
        (antialiased), centre crop to ``image_size``², then (x - mean) / std on the [0, 1] scale."""
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"images must be a tensor (N, 3, H, W) in [-1, 1], got {shape}")
        if not images.is_floating_point():
            raise ValueError(f"images must be floating point in [-1, 1], got dtype {images.dtype}")
        s = self.image_size
        h, w = images.shape[-2:]
        x = (images.float() + 1) / 2
        if (h, w) != (s, s):
            if h <= w:
                size = (s, max(s, int(s * w / h)))
            else:
                size = (max(s, int(s * h / w)), s)
            x = F.interpolate(x, size=size, mode=self.interpolation, align_corners=False, antialias=True)
            top, left = (size[0] - s) // 2, (size[1] - s) // 2
            x = x[..., top:top + s, left:left + s]
        return (x - self.mean) / self.std

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Unit-norm image embeddings ``(N, D)``; differentiable with respect to ``images``."""
        pixels = self.preprocess(images.to(self.device))
        pixels = pixels.to(next(self.model.parameters()).dtype)  # e.g. a half-precision model
        return F.normalize(_features(self.model.get_image_features(pixel_values=pixels)).float(), dim=-1)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, image_size={self.image_size}, embed_dim={self.embed_dim}"


# ----------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------

def _load_tokenizer(path):
    from transformers import AutoTokenizer, CLIPTokenizer

    try:
        return AutoTokenizer.from_pretrained(path)
    except Exception:  # a bare vocab.json/merges.txt folder has no tokenizer_config.json
        return CLIPTokenizer.from_pretrained(path)


def _read_processor_config(path: Path) -> dict:
    if not path.is_file():
        print(f"[asyrp_lib.models.clip] {path} not found: using the model's image size and OpenAI's mean/std",
              file=sys.stderr)
        return {}
    cfg = json.loads(path.read_text())
    crop = cfg.get("crop_size", cfg.get("size"))
    if isinstance(crop, dict):
        crop = crop.get("height", crop.get("shortest_edge"))
    out = {"image_size": crop, "mean": cfg.get("image_mean"), "std": cfg.get("image_std")}
    out["interpolation"] = _RESAMPLE.get(cfg.get("resample", 3), "bicubic")
    if out["interpolation"] == "nearest":
        out["interpolation"] = "bilinear"
    return {k: v for k, v in out.items() if v is not None}


def _load_from_hub(name: str):
    from transformers import CLIPImageProcessor, CLIPModel

    def load(local_only: bool):
        model = CLIPModel.from_pretrained(name, local_files_only=local_only)
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=local_only)
        try:
            proc = CLIPImageProcessor.from_pretrained(name, local_files_only=local_only)
            crop = proc.crop_size
            crop = crop.get("height") if isinstance(crop, dict) else getattr(crop, "height", crop)
            info = {"image_size": crop, "mean": list(proc.image_mean), "std": list(proc.image_std),
                    "interpolation": _RESAMPLE.get(int(proc.resample), "bicubic")}
        except Exception:
            info = {}
        return model, tokenizer, {k: v for k, v in info.items() if v is not None}

    try:
        return load(local_only=True)
    except Exception as cached_error:
        reachable, why = hub_reachable()
        if not reachable:
            raise hub_error(name, "CLIP model", why) from cached_error
    try:
        return load(local_only=False)
    except Exception as e:
        raise RuntimeError(f"Cannot load CLIP model {name!r} from the hub: {e}. Check the id, or use the "
                           f"offline 'toy' profile (ASYRP_PROFILE=toy) or a local folder.") from e


def random_clip(*, image_size: int = 32, patch_size: int = 8, words: Sequence[str] = ("face", "smiling", "a"),
                seed: int = 0, folder=None):
    """A small randomly initialised ``CLIPModel`` and a real BPE ``CLIPTokenizer``, built without the hub.

    For tests and the ``tiny`` profile. The tokenizer knows every byte and the given ``words``; the
    text config's special-token ids match it. Tokenizer files go to ``folder`` (default: a temporary one).
    """
    import tempfile

    from transformers import CLIPConfig, CLIPModel

    from .tokenizer_build import build_tokenizer

    if folder is None:
        with tempfile.TemporaryDirectory() as tmp:
            tokenizer = build_tokenizer(words, tmp)
    else:
        tokenizer = build_tokenizer(words, folder)
    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=32, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=image_size, patch_size=patch_size),
        projection_dim=16,
    )
    return CLIPModel(config).eval(), tokenizer
