r"""The directional CLIP loss (eq. 3).

The edit direction is judged in CLIP's joint embedding space (Gal et al., StyleGAN-NADA; Asyrp eq. 3):

    ΔI = E_I(x_edit) - E_I(x_source),   ΔT = E_T(y_target) - E_T(y_source)

    L_direction = 1 - cos(ΔI, ΔT)                       (eq. 3, ``directional_clip_loss``)
    S_dir       = cos(ΔI, ΔT)                           (evaluation, ``directional_similarity``)
    L_log       = -log((1 + cos(ΔI, ΔT)) / 2)           (the reference implementation's training form)

with E_I, E_T the unit-norm CLIP image and text embeddings. A *directional* loss asks the image to move
the way the text moves, instead of towards the target text itself, which would collapse every image
onto the same CLIP-pleasing picture.

The encoder (``encoder.encode_image`` / ``encode_text``, unit-norm embeddings) is any object with those two
methods: :class:`asyrp_lib.models.clip.CLIPEncoder` in real use, which loads CLIP; this module loads nothing.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .._utils import check_prompt_pair

__all__ = ["DirectionalCLIPLoss", "DEFAULT_TEMPLATES", "directional_clip_loss", "directional_similarity",
           "zero_shot_labels"]

#: Generic prompt templates; a prompt's text embedding is the normalised mean over them.
DEFAULT_TEMPLATES = (
    "{}",
    "a photo of {}.",
    "a picture of {}.",
    "an image of {}.",
    "a close-up photo of {}.",
    "a portrait of {}.",
    "a rendering of {}.",
    "a cropped photo of {}.",
)


# ----------------------------------------------------------------------------------------------
# The directional loss (eq. 3)
# ----------------------------------------------------------------------------------------------

def _text_direction(txt_target: torch.Tensor, txt_source: torch.Tensor) -> torch.Tensor:
    for name, t in (("txt_target", txt_target), ("txt_source", txt_source)):
        if not isinstance(t, torch.Tensor) or t.ndim not in (1, 2):
            raise ValueError(f"{name} must be a tensor (D,), (1, D) or (N, D), got "
                             f"{tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__}")
    d = txt_target - txt_source
    if bool((d.norm(dim=-1) <= 1e-8).any()):
        raise ValueError("txt_target and txt_source are the same embedding: the text direction ΔT is zero; "
                         "use two different prompts")
    return d


def directional_similarity(img_edit: torch.Tensor, img_source: torch.Tensor, txt_target: torch.Tensor,
                           txt_source: torch.Tensor) -> torch.Tensor:
    """S_dir = cos(ΔI, ΔT) per image, ``(N,)``: ΔI = img_edit - img_source, ΔT = txt_target - txt_source.

    Embeddings as returned by :class:`CLIPEncoder` (unit vectors): images ``(N, D)``, texts ``(D,)``,
    ``(1, D)`` (broadcast over N) or ``(N, D)``. An unchanged image (ΔI = 0) has similarity 0.
    """
    for name, e in (("img_edit", img_edit), ("img_source", img_source)):
        if not isinstance(e, torch.Tensor) or e.ndim != 2:
            raise ValueError(f"{name} must be a tensor of embeddings (N, D), got "
                             f"{tuple(e.shape) if isinstance(e, torch.Tensor) else type(e).__name__}")
    if img_edit.shape != img_source.shape and img_source.shape[0] != 1:
        raise ValueError(f"img_edit {tuple(img_edit.shape)} and img_source {tuple(img_source.shape)} must match")
    d_txt = _text_direction(txt_target, txt_source)
    if d_txt.shape[-1] != img_edit.shape[-1]:
        raise ValueError(f"text embeddings have D={d_txt.shape[-1]} but image embeddings D={img_edit.shape[-1]}")
    d_img = img_edit - img_source
    return F.cosine_similarity(d_img, d_txt.expand_as(d_img), dim=-1, eps=1e-8)


def directional_clip_loss(img_edit: torch.Tensor, img_source: torch.Tensor, txt_target: torch.Tensor,
                          txt_source: torch.Tensor) -> torch.Tensor:
    """Eq. (3): ``1 - cos(ΔI, ΔT)`` per image, ``(N,)``, in [0, 2] (0: the image moved along the text)."""
    return 1 - directional_similarity(img_edit, img_source, txt_target, txt_source)


class DirectionalCLIPLoss(nn.Module):
    """Eq. (3) for a fixed prompt pair: ``loss(images_edit, images_source)`` → ``(N,)``.

    ``source``/``target``: the prompts (e.g. "face", "smiling face"); each prompt's text embedding is the
    renormalised mean of its embeddings over ``templates`` (``None``: the bare prompt). ``form``:
    ``"cosine"`` gives ``1 - cos(ΔI, ΔT)`` (eq. 3), ``"log"`` the reference implementation's
    ``-log((1 + cos(ΔI, ΔT)) / 2)``. The source images are the fixed reference: they are encoded
    without gradient.
    """

    def __init__(self, encoder, source: str, target: str,
                 templates: Sequence[str] | None = DEFAULT_TEMPLATES, form: str = "cosine"):
        super().__init__()
        check_prompt_pair(source, target)
        if form not in ("cosine", "log"):
            raise ValueError(f"form must be 'cosine' or 'log', got {form!r}")
        templates = list(templates) if templates else ["{}"]
        for t in templates:
            if "{}" not in t:
                raise ValueError(f"templates must contain '{{}}' where the prompt goes, got {t!r}")
        self.encoder = encoder
        self.source, self.target, self.form, self.templates = source, target, form, templates
        with torch.no_grad():
            self.register_buffer("txt_source", self.embed_prompt(source), persistent=False)
            self.register_buffer("txt_target", self.embed_prompt(target), persistent=False)
        _text_direction(self.txt_target, self.txt_source)  # a zero ΔT (same embedding) is an error too

    def embed_prompt(self, prompt: str) -> torch.Tensor:
        """The template-averaged unit text embedding ``(D,)`` of one prompt."""
        emb = self.encoder.encode_text([t.format(prompt) for t in self.templates])
        return F.normalize(emb.mean(0), dim=-1)

    @property
    def text_cosine(self) -> float:
        """cos(E_T(source), E_T(target)): how close the two prompts are (used by ``intervals.edit_threshold``)."""
        return float(F.cosine_similarity(self.txt_source, self.txt_target, dim=0))

    def similarity(self, images_edit: torch.Tensor, images_source: torch.Tensor | None = None, *,
                   source_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """S_dir = cos(ΔI, ΔT) per image, ``(N,)``. Give the source as images or, to encode them only once
        in a training loop, as ``source_embeds = encoder.encode_image(images_source)``."""
        if (images_source is None) == (source_embeds is None):
            raise ValueError("give exactly one of images_source (images) or source_embeds (their CLIP embeddings)")
        if source_embeds is None:
            with torch.no_grad():
                source_embeds = self.encoder.encode_image(images_source)
        return directional_similarity(self.encoder.encode_image(images_edit), source_embeds.detach(),
                                      self.txt_target, self.txt_source)

    def forward(self, images_edit: torch.Tensor, images_source: torch.Tensor | None = None, *,
                source_embeds: torch.Tensor | None = None) -> torch.Tensor:
        cos = self.similarity(images_edit, images_source, source_embeds=source_embeds)
        if self.form == "log":
            return -torch.log(((1 + cos) / 2).clamp_min(1e-8))
        return 1 - cos

    def extra_repr(self) -> str:
        return f"source={self.source!r}, target={self.target!r}, form={self.form!r}, templates={len(self.templates)}"


# ----------------------------------------------------------------------------------------------
# Zero-shot reading
# ----------------------------------------------------------------------------------------------
@torch.no_grad()
def zero_shot_labels(encoder, images: torch.Tensor, prompts: Sequence[str], target_prompt: str,
                     batch_size: int = 64) -> torch.Tensor:
    """CLIP's zero-shot reading, ``(N,)`` booleans: True where ``target_prompt`` is the prompt of ``prompts`` whose
    text embedding lies nearest the image's (e.g. ``["face", "smiling face"]``: does CLIP read a smile?)."""
    prompts = list(prompts)
    if target_prompt not in prompts:
        raise ValueError(f"target_prompt: expected one of {prompts}, got {target_prompt!r}")
    txt = encoder.encode_text(prompts)
    out = []
    for i in range(0, images.shape[0], batch_size):
        img = encoder.encode_image(images[i:i + batch_size].float().clamp(-1, 1))
        out.append((img @ txt.T.to(img.dtype)).argmax(1).cpu() == prompts.index(target_prompt))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.bool)
