r"""CLIP-checked edits: edit a batch, let CLIP find the faces the edit did not reach, edit those once more, stronger.

A trained f_t moves most faces a similar way, but at strength 1 it leaves a few almost as they were (on the toy
model, about one face in five for ``smiling`` and ``closed_eyes``: the smile stays below the oracle's threshold,
the eyes open). The CLIP that trained f_t can tell those faces apart after the edit, without any label: per face
and direction, the *CLIP gain*

    g = s · ( [cos(E_I(x_edit), E_T(target)) − cos(E_I(x_edit), E_T(source))]
              − [cos(E_I(x_0),    E_T(target)) − cos(E_I(x_0),    E_T(source))] )

(unit embeddings; the prompts are the ones the direction was trained with, template-averaged as in training;
s = the sign of the direction's strength, so that strength −1 of ``smiling`` is judged as moving away from
"smiling face"). A face is *weak* for a direction when its g is below ``share`` (default 0.5) times the batch's
median g: it moved less than half as far as the typical face. :func:`edit_checked` edits the batch, finds the
weak faces and edits each of them again from its (cached) inversion with the strength of every direction it is
weak for multiplied by ``factor`` (default 1.5); the other faces keep their first edit. One retry, no loop.

The median needs a batch: at least :data:`MIN_BATCH` images, unless ``references`` gives the typical gain per
direction (e.g. the ``median_gains`` of an earlier :class:`CheckedEdit` of the same directions; ``asyrp edit
--retry`` judges a last chunk of fewer images by its first chunk's medians). The rule assumes
faces that lack the target, as ``asyrp evaluate`` picks them: a face that already shows it cannot move much
further, so its gain is small too and it is retried (at 1.5 × the strength, usually harmless, but not needed).

Measured on the toy model (``data/MODEL_CARD.md``): the faces the CLIP gain marks weak are the faces the oracle
reads as failed edits (all of them, and one or two successes more), and the retry raises the success of
``smiling``, ``closed_eyes`` and ``glasses`` (for the last two at the cost of one face's other attributes). It
cannot help a face the direction does not move at all, nor a direction that changes other attributes as it edits
(``red_hair``): CLIP checks the target, not what else moved.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from ._utils import check_number, check_share
from .delta_net import DeltaNet
from .pipeline import MAX_STRENGTH

__all__ = ["CheckedEdit", "clip_gain", "weak_faces", "edit_checked", "DEFAULT_FACTOR", "DEFAULT_SHARE", "MIN_BATCH"]

#: Strength multiplier of the retry.
DEFAULT_FACTOR = 1.5
#: A face is weak when its CLIP gain is below this share of the batch's median gain.
DEFAULT_SHARE = 0.5
#: The fewest images whose median gain is a usable reference.
MIN_BATCH = 8


@dataclass
class CheckedEdit:
    """The result of :func:`edit_checked`."""

    result: object  # an asyrp_lib.pipeline.EditResult: ``edited`` holds the weak faces' retries
    first_edited: torch.Tensor  # (N, 3, S, S) the first pass, every face at the given strengths
    gains: torch.Tensor  # (N, D) CLIP gain of the first edit, per face and direction
    weak: torch.Tensor  # (N, D) bool: face i was weak for direction j and retried with it × factor
    median_gains: list[float]  # the reference gain per direction (the batch median, or the given one)
    factor: float
    share: float

    @property
    def retried(self) -> torch.Tensor:
        """(N,) bool: the faces edited a second time."""
        return self.weak.any(dim=1)

    @property
    def edited(self) -> torch.Tensor:
        return self.result.edited


def _unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.float(), dim=-1)


@torch.no_grad()
def _image_units(encoder, images: torch.Tensor) -> torch.Tensor:
    return _unit(encoder.encode_image(images.to(encoder.device)))


def _gain(units_source: torch.Tensor, units_edit: torch.Tensor, txt_source: torch.Tensor, txt_target: torch.Tensor,
          sign: float) -> torch.Tensor:
    direction = (_unit(txt_target) - _unit(txt_source)).to(units_edit.device)
    return (1.0 if sign >= 0 else -1.0) * ((units_edit - units_source) @ direction).cpu()


def clip_gain(encoder, source_images: torch.Tensor, edited_images: torch.Tensor, txt_source: torch.Tensor,
              txt_target: torch.Tensor, sign: float = 1.0) -> torch.Tensor:
    """Per image, how much further toward ``txt_target`` (and away from ``txt_source``) CLIP puts the edited
    image than its source (the formula in the module docstring); ``(N,)``. ``encoder``: a
    :class:`~asyrp_lib.clip.CLIPEncoder`; the text embeddings are unit vectors ``(D,)``."""
    if source_images.shape != edited_images.shape:
        raise ValueError(f"clip_gain: source {tuple(source_images.shape)} and edited {tuple(edited_images.shape)} "
                         "images differ in shape")
    return _gain(_image_units(encoder, source_images), _image_units(encoder, edited_images), txt_source, txt_target,
                 sign)


def _check_batch(n: int) -> None:
    if n < MIN_BATCH:
        raise ValueError(f"the CLIP check compares each face with the batch's median gain, which needs at least "
                         f"{MIN_BATCH} images; got {n}. Edit more images at once, or pass references= (e.g. the "
                         "median_gains of an earlier check of the same directions)")


def weak_faces(gains: torch.Tensor, share: float = DEFAULT_SHARE, reference: float | None = None
               ) -> tuple[torch.Tensor, float]:
    """(weak mask ``(N,)``, reference): ``gains < share × reference``, the reference being the median of
    ``gains`` unless given. Needs :data:`MIN_BATCH` gains without a reference."""
    check_share(share, "share")
    gains = gains.flatten().float()
    if reference is None:
        _check_batch(gains.numel())
        reference = float(gains.median())
    return gains < float(share) * float(reference), float(reference)


def _prompt_embeddings(encoder, direction) -> tuple[torch.Tensor, torch.Tensor]:
    from .clip import DirectionalCLIPLoss

    meta = direction.source.metadata if isinstance(direction.source, DeltaNet) else {}
    if not (meta.get("source") and meta.get("target")):
        raise ValueError(f"the CLIP check needs each direction's prompts, and {direction.name!r} records none (only a "
                         "trained direction, a DeltaNet or its folder, does); edit without the check")
    loss = DirectionalCLIPLoss(encoder, meta["source"], meta["target"])
    return loss.txt_source, loss.txt_target


def edit_checked(editor, images: torch.Tensor, directions, *, factor: float = DEFAULT_FACTOR,
                 share: float = DEFAULT_SHARE, references: Sequence[float] | None = None,
                 generator: torch.Generator | None = None, **edit_kwargs) -> CheckedEdit:
    """Edit ``images`` with ``directions`` (as :meth:`AsyrpEditor.edit <asyrp_lib.pipeline.AsyrpEditor.edit>`), then
    edit the faces CLIP finds weak once more with those directions' strengths × ``factor`` (module docstring).

    ``references``: the typical gain per direction (default: each direction's median over this batch, which needs
    at least :data:`MIN_BATCH` images). ``generator`` draws the boosting noise of both passes. Other keyword
    arguments go to :meth:`edit`; ``keep_previews`` is not supported. The returned ``result.reconstruction`` is the
    first pass's."""
    if check_number(factor, "factor") <= 1.0:
        raise ValueError(f"factor: expected a strength multiplier above 1, got {factor!r}")
    if edit_kwargs.get("keep_previews"):
        raise ValueError("keep_previews: not available with the CLIP check (faces come from two passes)")
    dirs = editor.directions(directions, allow_other_model=edit_kwargs.get("allow_other_model", False))
    if not dirs:
        raise ValueError("directions: the CLIP check needs at least one direction")
    if references is not None and len(references) != len(dirs):
        raise ValueError(f"references: expected one gain per direction ({len(dirs)}), got {len(references)}")
    if references is None:  # before editing: the median needs a batch
        _check_batch(images.shape[0])
    for d in dirs:  # the retry's strengths too, before any editing
        if abs(d.strength * float(factor)) > MAX_STRENGTH:
            raise ValueError(f"factor: the retry would edit with {d.name} at {float(factor):g} × {d.strength:g} = "
                             f"{d.strength * float(factor):g}, beyond the largest strength, {MAX_STRENGTH:g}")
    encoder = editor.profile.clip
    prompts = [_prompt_embeddings(encoder, d) for d in dirs]  # before editing: fail fast
    pairs = [(d.source, d.strength) for d in dirs]
    first = editor.edit(images, pairs, generator=generator, **edit_kwargs)
    units_source, units_edit = _image_units(encoder, first.source), _image_units(encoder, first.edited)  # once
    gains = torch.stack([_gain(units_source, units_edit, ts, tt, d.strength) for d, (ts, tt) in zip(dirs, prompts)],
                        dim=1)
    weak_cols, medians = [], []
    for j in range(len(dirs)):
        mask, ref = weak_faces(gains[:, j], share, None if references is None else references[j])
        weak_cols.append(mask)
        medians.append(ref)
    weak = torch.stack(weak_cols, dim=1)
    edited = first.edited.clone()
    retry_kwargs = {**edit_kwargs, "reconstruct": False}
    for pattern in sorted({tuple(row.tolist()) for row in weak if row.any()}):
        idx = (weak == torch.tensor(pattern)).all(dim=1).nonzero().flatten()
        stronger = [(d.source, d.strength * (factor if w else 1.0)) for d, w in zip(dirs, pattern)]
        again = editor.edit(images[idx.to(images.device)], stronger, generator=generator, **retry_kwargs)
        edited[idx.to(edited.device)] = again.edited.to(edited.device)
    first_edited, first.edited = first.edited, edited
    return CheckedEdit(result=first, first_edited=first_edited, gains=gains, weak=weak, median_gains=medians,
                       factor=float(factor), share=float(share))
