r"""The loss of one editing step — the same for f_t (notebook 06), a global Δh (05) and a Δε (04).

At an edit step t ≥ t_edit, with P_t^edit = P_t(ε(x_t | Δh_t)) the edited prediction of x_0 (course eq. 2, 5):

    L_t = λ_clip · L_dir(P_t^edit, x_0)  +  λ_L1 · w_text · mean |P_t^edit − P_t^source|

- L_dir is the directional CLIP loss (eq. 3) in the reference implementation's form
  ``-log((1 + cos(ΔI, ΔT)) / 2)`` (``clip_form="log"``), or ``1 - cos(ΔI, ΔT)`` (``"cosine"``, eq. 3 as
  written); ΔI = E_I(P_t^edit) − E_I(x_0), ΔT = E_T(target) − E_T(source).
- P_t^source (``l1_target``): ``"unedited"`` (default, as the paper and the reference code define it) is P_t on
  the *unedited* trajectory — the reconstruction from the same x_T — at the same t; ``"current"`` is
  P_t(ε(x_t)) at the edited latent itself, which only penalises the edit's effect at this one step.
- w_text (``l1_text_weight``): cos(E_T(source), E_T(target)), the reference code's weighting of the L1 term
  (close prompts → the edit should stay small); 1 when off.
- ``l1_spare`` (this project's addition; 0 = the reference's plain mean): the share of each image's pixels, those
  that P_t^edit changes most, that the L1 term does not charge. The mean is then taken over the other pixels
  (per pixel: |P_t^edit − P_t^source| averaged over the colour channels). A large edit (glasses, a new hair
  colour) changes many pixels in one region; with the plain mean the L1 term charges for that region as much as
  for changes elsewhere, so a λ_L1 large enough to keep the rest of the face also stops the edit. Sparing the
  most-changed pixels lets the edit have its region while the L1 term still charges everything outside it.

Defaults (the reference implementation's README: ``--clip_loss_w 1.0 --l1_loss_w 3.0``): λ_clip = 1,
λ_L1 = 3, the log form, the unedited target, text weighting on. :func:`loss_step` computes L_t for one
:class:`asyrp_lib.core.process.ProcessStep` and takes the optimiser step; a non-finite loss or weight raises
:class:`TrainingDiverged`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Sequence

import torch

from .._utils import check_number, check_share

__all__ = ["AsyrpLoss", "LossSettings", "LossTerms", "TrainingDiverged", "l1_distance", "loss_step", "resolve_loss"]

L1_TARGETS = ("unedited", "current")


class TrainingDiverged(RuntimeError):
    """The loss or the trained weights became NaN or infinite."""


@dataclass(frozen=True)
class AsyrpLoss:
    """The settings of L_t (see the module docstring); one set of defaults for every caller."""

    lambda_clip: float = 1.0
    lambda_l1: float = 3.0
    clip_form: str = "log"  # "log": -log((1 + cos)/2) (the reference's); "cosine": 1 - cos (eq. 3)
    l1_target: str = "unedited"  # "unedited": P_t of the reconstruction at t; "current": P_t(ε(x_t)) at the edited x_t
    l1_text_weight: bool = True  # multiply λ_L1 by cos(E_T(source), E_T(target)), as the reference does
    l1_spare: float = 0.0  # share of each image's most-changed pixels the L1 term leaves out (0: plain mean)

    def __post_init__(self):
        check_number(self.lambda_clip, "lambda_clip")
        check_number(self.lambda_l1, "lambda_l1")
        check_share(self.l1_spare, "l1_spare")
        if self.clip_form not in ("log", "cosine"):
            raise ValueError(f"clip_form: expected 'log' or 'cosine', got {self.clip_form!r}")
        if self.l1_target not in L1_TARGETS:
            raise ValueError(f"l1_target: expected one of {', '.join(L1_TARGETS)}, got {self.l1_target!r}")

    @property
    def needs_reconstruction(self) -> bool:
        """Whether the unedited trajectory must run beside the edited one (the ``"unedited"`` L1 target)."""
        return self.l1_target == "unedited" and self.lambda_l1 > 0

    def to_dict(self) -> dict:
        return asdict(self)

    def terms(self, step, clip_loss, source_embeds: torch.Tensor) -> "LossTerms":
        """L_t and its two parts for one edit step (``step``: a ProcessStep with ε_edit carrying the graph)."""
        p_edit = step.pred_x0  # P_t^edit
        cos = clip_loss.similarity(p_edit, source_embeds=source_embeds)  # cos(ΔI, ΔT), one per image
        l_dir = (-torch.log(((1 + cos) / 2).clamp_min(1e-8)) if self.clip_form == "log" else 1 - cos).mean()
        p_src = step.pred_x0_unedited if self.l1_target == "unedited" and step.x_t.shape[0] > step.n \
            else step.pred_x0_plain
        if self.l1_target == "unedited" and step.x_t.shape[0] == step.n and self.lambda_l1 > 0:
            raise ValueError("l1_target='unedited' needs the unedited trajectory: run the process with reconstruct=True")
        l_l1 = l1_distance(p_edit, p_src.detach(), self.l1_spare)  # mean |P_t^edit - P_t^source|
        w_text = float(clip_loss.text_cosine) if self.l1_text_weight else 1.0
        total = self.lambda_clip * l_dir + self.lambda_l1 * w_text * l_l1  # L_t
        return LossTerms(total=total, clip=l_dir, l1=l_l1)


@dataclass(frozen=True)
class LossSettings:
    """The loss of a training run before its recipe is applied: :class:`AsyrpLoss`'s fields, with ``None`` for
    λ_L1, the L1 target and the spared share meaning "the recipe's" (:class:`asyrp_lib.core.train.TrainConfig`
    holds one). :meth:`as_loss` gives the :class:`AsyrpLoss` once they are set."""

    lambda_clip: float = AsyrpLoss.lambda_clip
    lambda_l1: float | None = None
    clip_form: str = AsyrpLoss.clip_form
    l1_target: str | None = None
    l1_text_weight: bool = AsyrpLoss.l1_text_weight
    l1_spare: float | None = None

    def as_loss(self) -> AsyrpLoss:
        """The :class:`AsyrpLoss` of these settings (checked); a field still ``None`` takes AsyrpLoss's default."""
        return AsyrpLoss(**{k: v for k, v in asdict(self).items() if v is not None})


def l1_distance(a: torch.Tensor, b: torch.Tensor, spare: float = 0.0) -> torch.Tensor:
    """Mean |a − b| over images (N, C, H, W); with ``spare`` > 0, over each image's pixels left after taking out
    the ``spare`` share of them where |a − b| (averaged over channels) is largest. ``spare`` 0: ``(a - b).abs().mean()``."""
    diff = (a - b).abs()
    if spare <= 0:
        return diff.mean()
    per_pixel = diff.mean(dim=1).flatten(1)  # (N, H·W)
    keep = max(1, per_pixel.shape[1] - int(spare * per_pixel.shape[1]))
    return per_pixel.topk(keep, dim=1, largest=False).values.mean()


def resolve_loss(loss: AsyrpLoss | None = None, lambda_l1: float | None = None) -> AsyrpLoss:
    """``loss`` (default: ``AsyrpLoss()``), with its λ_L1 replaced by ``lambda_l1`` when that is given."""
    loss = loss if loss is not None else AsyrpLoss()
    return loss if lambda_l1 is None else replace(loss, lambda_l1=check_number(lambda_l1, "lambda_l1"))


@dataclass
class LossTerms:
    total: torch.Tensor
    clip: torch.Tensor  # L_dir
    l1: torch.Tensor  # mean |P_t^edit - P_t^source| (before weighting)

    def as_floats(self) -> dict:
        return {"loss": float(self.total.detach()), "clip": float(self.clip.detach()), "l1": float(self.l1.detach())}


def loss_step(step, loss: AsyrpLoss, clip_loss, source_embeds: torch.Tensor, opt: torch.optim.Optimizer,
              params: Sequence[torch.Tensor], *, where: str = "") -> dict:
    """L_t for ``step``, backward, one optimiser step; returns the floats of :class:`LossTerms`.

    Raises :class:`TrainingDiverged` (naming ``where``: e.g. "step 4 (epoch 2, t = 500)") when the loss or any
    of ``params`` is not finite; the optimiser step is not taken for a non-finite loss.
    """
    terms = loss.terms(step, clip_loss, source_embeds)
    values = terms.as_floats()
    if not torch.isfinite(terms.total):
        raise TrainingDiverged(f"the loss became {values['loss']} at {where or f't = {step.t}'} (directional "
                               f"{values['clip']:.4g}, L1 {values['l1']:.4g}).")
    opt.zero_grad(set_to_none=True)
    terms.total.backward()
    opt.step()
    if not all(torch.isfinite(p).all() for p in params):
        raise TrainingDiverged(f"the update at {where or f't = {step.t}'} made the trained weights non-finite.")
    return values
