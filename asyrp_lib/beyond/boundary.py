r"""A linear boundary in h (Zhu et al., "Boundary guided learning-free semantic control with diffusion models",
NeurIPS 2023): the attribute as a half-space of the bottleneck.

At one "mixing" timestep t_m, the h_{t_m} of labelled images are separated by a linear classifier
w·h + b (logistic regression here, an SVM in the paper); the edit is a step along the boundary's unit normal
n = w / ‖w‖,

    h_t ← h_t + c · d · n,      d = mean_{y=1} n·h − mean_{y=0} n·h,

so c = 1 moves a typical image without the attribute to where a typical image with it sits (a typical image, not
every one: the strength c is chosen on development images, :func:`asyrp_lib.beyond.methods.choose_strength`,
from :data:`asyrp_lib.beyond.methods.BOUNDARY_STRENGTHS`; :func:`boundary_delta`). The paper moves h
once, at t_m; here the same Δh = c d n is applied at every step of the editing interval [T, t_edit] through the
asymmetric step (eq. 4/5), behind the same h-space hook as every other edit of the library, so that the methods
differ only by their Δh. The labels are a user's: the toy CLIP's zero-shot reading (:func:`clip_labels`), with
the oracle's (:func:`oracle_labels`) as the upper bound.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ..core.clip_loss import zero_shot_labels

__all__ = ["LinearBoundary", "fit_linear_boundary", "class_mean_distance", "boundary_delta", "BoundaryDirection",
           "boundary_direction", "clip_labels", "oracle_labels"]


@dataclass
class LinearBoundary:
    """A fitted linear classifier on flat features: sign(normal·x + offset) predicts the label."""

    normal: torch.Tensor  # (D,) unit
    offset: float
    distance: float  # mean projection of the positives minus that of the negatives, along ``normal``
    train_accuracy: float


def fit_linear_boundary(features: torch.Tensor, labels: torch.Tensor, *, l2: float = 1e-3,
                        iters: int = 100) -> LinearBoundary:
    """Logistic regression (L2 penalty ``l2`` on w, L-BFGS) on ``features`` (N, D) with boolean ``labels`` (N,);
    the features are centred first. Returns the unit normal of the boundary and how far apart the classes sit."""
    if not isinstance(features, torch.Tensor) or features.dim() != 2 or features.shape[0] < 2:
        raise ValueError(f"features: expected a tensor (N ≥ 2, D), got {tuple(getattr(features, 'shape', ()))}")
    y = torch.as_tensor(labels).bool().flatten()
    if y.shape[0] != features.shape[0]:
        raise ValueError(f"labels: expected {features.shape[0]} labels, got {y.shape[0]}")
    if bool(y.all()) or not bool(y.any()):
        raise ValueError("labels: both classes are needed (some True and some False)")
    X = features.double()
    mean = X.mean(0)
    Xc = X - mean
    scale = Xc.norm(dim=1).mean().clamp_min(1e-12)  # features of order 1: the penalty means the same at any scale
    Xs = Xc / scale
    target = y.double()
    w = torch.zeros(X.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    pos = target.mean()
    weight = torch.where(y, 0.5 / pos, 0.5 / (1 - pos))  # balanced classes
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=int(iters), line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        logits = Xs @ w + b
        loss = (weight * torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")).mean()
        loss = loss + l2 * (w ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    w = w.detach()
    norm = w.norm()
    if float(norm) == 0:
        raise ValueError("features: the classifier found no direction (are the features constant?)")
    n = w / norm
    acc = float(((Xs @ w + b.detach() > 0) == y).double().mean())
    return LinearBoundary(normal=n.float(), offset=float(b.detach() * scale / norm - mean @ n),
                          distance=float(class_mean_distance(X, y, n)), train_accuracy=acc)


def class_mean_distance(features: torch.Tensor, labels: torch.Tensor, normal: torch.Tensor) -> torch.Tensor:
    """d = mean_{y=1} n·x − mean_{y=0} n·x with n = ``normal`` / ‖``normal``‖: how far apart the two classes of
    ``features`` (N, …; each row flattened) sit along the normal, positive towards the positives (a 0-d tensor)."""
    y = torch.as_tensor(labels).bool().flatten()
    n = normal.flatten().double()
    proj = features.flatten(1).double() @ (n / n.norm())
    return proj[y].mean() - proj[~y].mean()


def boundary_delta(h: torch.Tensor, labels: torch.Tensor, normal: torch.Tensor, c: float = 1.0) -> torch.Tensor:
    """The boundary edit Δh = c · d · n (one for every face, of one h's shape): n = ``normal`` / ‖``normal``‖ the
    unit normal (``normal``: the classifier's w, any length, of one h's shape), d the distance between the class
    means of ``h`` (N, C, H, W) with ``labels`` (N,) along n (:func:`class_mean_distance`), ``c`` the strength."""
    n = normal.double() / normal.double().norm()
    return (float(c) * class_mean_distance(h, labels, normal) * n).to(h.dtype)


@dataclass
class BoundaryDirection:
    """A boundary in h at the mixing step: Δh = c · ``distance`` · ``normal``."""

    normal: torch.Tensor  # (C, H, W) unit
    distance: float
    train_accuracy: float
    label_accuracy: float | None  # agreement of the labels used with the oracle's (None if not known)
    t: int
    labels: torch.Tensor | None = None  # (N,) bool: the labels it was fitted on

    def delta_h(self, strength: float = 1.0) -> torch.Tensor:
        return float(strength) * self.distance * self.normal


def boundary_direction(h: torch.Tensor, labels: torch.Tensor, t: int, *, truth: torch.Tensor | None = None,
                       **kw) -> BoundaryDirection:
    """The boundary between h (N, C, H, W) of images with ``labels`` True and False (h at ``t``, e.g. from
    :func:`asyrp_lib.beyond.directions.collect_h`). ``truth``: the oracle's labels, to report how right ``labels`` were."""
    fit = fit_linear_boundary(h.flatten(1), labels, **kw)
    acc = None if truth is None else float((torch.as_tensor(labels).bool() == torch.as_tensor(truth).bool())
                                           .double().mean())
    return BoundaryDirection(normal=fit.normal.view(h.shape[1:]), distance=fit.distance,
                             train_accuracy=fit.train_accuracy, label_accuracy=acc, t=int(t),
                             labels=torch.as_tensor(labels).bool().flatten().cpu())


def clip_labels(clip, images: torch.Tensor, prompts: Sequence[str], target_prompt: str,
                batch_size: int = 64) -> torch.Tensor:
    """Zero-shot labels: True where ``target_prompt`` is the prompt of ``prompts`` nearest the image in CLIP
    (``clip``: a :class:`asyrp_lib.models.clip.CLIPEncoder`; e.g. the profile's ``keep_prompts`` group of an attribute;
    :func:`asyrp_lib.core.clip_loss.zero_shot_labels`)."""
    return zero_shot_labels(clip, images, prompts, target_prompt, batch_size=batch_size)


def oracle_labels(oracle, images: torch.Tensor, attribute: str, value: str) -> torch.Tensor:
    """True where the oracle reads ``attribute = value`` (smile by its label)."""
    from ..toy.evaluate import label_of

    return torch.tensor([label_of(p, attribute) == value for p in oracle.predict(images.float().clamp(-1, 1))])
