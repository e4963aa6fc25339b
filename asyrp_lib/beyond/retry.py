r"""CLIP-checked edits: edit a batch, let CLIP find the faces the edit did not reach (or, with ``keep``, changed
elsewhere) and edit those again, stronger (or weaker).

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

*Keeping the other attributes* (``keep=``; ``asyrp evaluate --keep``, ``asyrp edit --keep``). The same CLIP can
read what else an edit changed. ``keep`` gives one group of prompts per attribute (a profile's ``keep_prompts``;
for the toy world "a face with glasses" / "a face without glasses", the hair colours, …); an image's reading of
an attribute is the group's prompt nearest to it (zero-shot), and the groups holding the prompt nearest a
direction's target prompt (the edited attributes) are left out. A face whose reading of a kept attribute differs
between its source and its edit is edited again *weaker* (strength ÷ ``factor``), a weak face stronger
(× ``factor``), and a face seen both ways halfway between (the geometric mean), up to ``tries`` edits more (3).
It keeps the first edit that is neither weak nor changes a kept attribute, else the one weak for the fewest
directions and then changing the fewest attributes (ties: the later). So this is a search, judged by CLIP alone,
for the strength at which a face takes the edit and nothing else; it finds one where one exists and cannot where
the direction moves other attributes at every strength that reaches its target.

Measured on the toy model (``data/MODEL_CARD.md``): the faces the CLIP gain marks weak are the faces the oracle
reads as failed edits (all of them, and one or two successes more), and the retry raises the success of
``smiling``, ``closed_eyes`` and ``glasses`` (for the last two at the cost of one face's other attributes). It
cannot help a face the direction does not move at all. Without ``keep`` it checks the target, not what else
moved, so it does not make an entangled direction (``red_hair``) cleaner; with ``keep`` it makes it cleaner
only on the faces where a weaker edit still reaches the target.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Sequence

import torch
import torch.nn.functional as F

from .._utils import check_number, check_share
from ..core.delta_net import DeltaNet
from ..core.pipeline import MAX_STRENGTH

__all__ = ["CheckedEdit", "CheckOptions", "clip_gain", "weak_faces", "edit_checked", "DEFAULT_FACTOR", "DEFAULT_SHARE", "MIN_BATCH",
           "DEFAULT_TRIES_KEEP", "MAX_TRIES"]

#: Strength multiplier of the retry.
DEFAULT_FACTOR = 1.5
#: A face is weak when its CLIP gain is below this share of the batch's median gain.
DEFAULT_SHARE = 0.5
#: The fewest images whose median gain is a usable reference.
MIN_BATCH = 8
#: Edits more per face with ``keep`` (a search over the strength), unless ``tries`` is given.
DEFAULT_TRIES_KEEP = 3
#: The most edits more per face.
MAX_TRIES = 8


@dataclass
class CheckedEdit:
    """The result of :func:`edit_checked`."""

    result: object  # an asyrp_lib.core.pipeline.EditResult: ``edited`` holds the weak faces' retries
    first_edited: torch.Tensor  # (N, 3, S, S) the first pass, every face at the given strengths
    gains: torch.Tensor  # (N, D) CLIP gain of the first edit, per face and direction
    weak: torch.Tensor  # (N, D) bool: face i was weak for direction j and retried with it × factor
    median_gains: list[float]  # the reference gain per direction (the batch median, or the given one)
    factor: float
    share: float
    changed: torch.Tensor | None = None  # (N,) with keep: attributes CLIP read as changed by the first edit
    kept: list[str] = field(default_factory=list)  # the attribute groups checked (keep=), the edited ones left out
    extra: torch.Tensor | None = None  # (N,) how many more times each face was edited
    multipliers: torch.Tensor | None = None  # (N, D) the strength multipliers of the edit each face kept
    final_weak: torch.Tensor | None = None  # (N, D) the kept edit was weak for that direction
    final_changed: torch.Tensor | None = None  # (N,) with keep: attributes the kept edit changed

    @property
    def retried(self) -> torch.Tensor:
        """(N,) bool: the faces edited a second time."""
        return self.weak.any(dim=1) if self.extra is None else self.extra > 0

    @property
    def leaky(self) -> torch.Tensor:
        """(N,) bool: with keep, the faces whose first edit changed an attribute CLIP was asked to keep."""
        return torch.zeros(self.weak.shape[0], dtype=torch.bool) if self.changed is None else self.changed > 0

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
    :class:`~asyrp_lib.models.clip.CLIPEncoder`; the text embeddings are unit vectors ``(D,)``."""
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
    from ..core.clip_loss import DirectionalCLIPLoss

    meta = direction.source.metadata if isinstance(direction.source, DeltaNet) else {}
    if not (meta.get("source") and meta.get("target")):
        raise ValueError(f"the CLIP check needs each direction's prompts, and {direction.name!r} records none (only a "
                         "trained direction, a DeltaNet or its folder, does); edit without the check")
    loss = DirectionalCLIPLoss(encoder, meta["source"], meta["target"])
    return loss.txt_source, loss.txt_target


def _keep_groups(encoder, keep, prompts) -> list[tuple[str, torch.Tensor]]:
    """The ``keep`` groups as (name, unit prompt embeddings (P, D)), leaving out every group that holds the prompt
    nearest a direction's target prompt (the edited attribute itself)."""
    if isinstance(keep, (str, bytes)) or not hasattr(keep, "items"):
        raise ValueError(f"keep: expected {{attribute: [prompt, …]}} (e.g. a profile's keep_prompts), got {keep!r}")
    from .._utils import check_prompts

    groups = []
    for name, texts in keep.items():
        texts = check_prompts(list(texts) if isinstance(texts, tuple) else texts, f"keep[{name!r}]")
        if len(texts) < 2:
            raise ValueError(f"keep: the group {name!r} needs two or more prompts to choose among, got {texts!r}")
        with torch.no_grad():
            groups.append((str(name), encoder.encode_text(texts)))  # unit vectors
    if not groups:
        raise ValueError("keep: no attribute groups given (this profile has no keep_prompts; pass keep=…)")
    own = set()
    for _, target in prompts:
        sims = [float((units.to(target.device) @ _unit(target)).max()) for _, units in groups]
        own.add(max(range(len(groups)), key=sims.__getitem__))
    kept = [g for k, g in enumerate(groups) if k not in own]
    if not kept:
        raise ValueError(f"keep: every group names an edited attribute ({', '.join(n for n, _ in groups)}); "
                         "nothing is left to keep")
    return kept


def _readings(units: torch.Tensor, groups) -> torch.Tensor:
    """(N, G): per image, the index of the nearest prompt of each group."""
    if not groups:
        return torch.zeros(units.shape[0], 0, dtype=torch.long)
    return torch.stack([(units @ g.to(units.device).T).argmax(dim=1).cpu() for _, g in groups], dim=1)


@dataclass(frozen=True)
class CheckOptions:
    """The CLIP check of :func:`edit_checked`: ``factor`` (the strength multiplier of a retry, above 1), ``share``
    (a face is weak below this share of the typical gain), ``references`` (the typical gain per direction;
    default each direction's median over the batch), ``keep`` (``{attribute: [prompt, …]}``: also check that these
    attributes stay), ``tries`` (edits more per face; default 3 with ``keep``, else 1)."""

    factor: float = DEFAULT_FACTOR
    share: float = DEFAULT_SHARE
    references: Sequence[float] | None = None
    keep: dict | None = None
    tries: int | None = None


_CHECK_FIELDS = frozenset(f.name for f in fields(CheckOptions))


def edit_checked(editor, images: torch.Tensor, directions, *, check: CheckOptions | None = None,
                 generator: torch.Generator | None = None, **keywords) -> CheckedEdit:
    """Edit ``images`` with ``directions`` (as :meth:`AsyrpEditor.edit <asyrp_lib.core.pipeline.AsyrpEditor.edit>`), then
    edit the faces CLIP finds weak once more with those directions' strengths × ``factor`` (module docstring).

    ``check``: a :class:`CheckOptions`, whose fields may also be given by name (``factor=2.0, keep=…``).
    ``keep``: ``{attribute: [prompt, …]}`` (e.g. ``editor.profile.keep_prompts``): CLIP also reads each of these
    attributes (the nearest prompt of each group) on the source and the edit, leaving out the groups of the edited
    attributes, and a face whose reading changed is edited again *weaker* (÷ ``factor``); a face that is weak goes
    stronger, and once a face has been both, halfway between (geometric mean) — up to ``tries`` edits more per
    face (default 3 with ``keep``, else 1). A face keeps its first edit that passes both tests, else the edit
    that was weak for the fewest directions and then changed the fewest attributes (ties: the later one).
    Without ``keep`` this is the one retry of the weak faces, and the retry is kept.

    ``references``: the typical gain per direction (default: each direction's median over this batch, which needs
    at least :data:`MIN_BATCH` images). ``generator`` draws the boosting noise of every pass. Other keyword
    arguments go to :meth:`edit`; ``keep_previews`` is not supported. The returned ``result.reconstruction`` is the
    first pass's."""
    check = replace(check or CheckOptions(), **{k: v for k, v in keywords.items() if k in _CHECK_FIELDS})
    edit_kwargs = {k: v for k, v in keywords.items() if k not in _CHECK_FIELDS}
    dirs = _checked_inputs(editor, images, directions, check, edit_kwargs)
    encoder = editor.profile.clip
    prompts = [_prompt_embeddings(encoder, d) for d in dirs]  # before editing: fail fast
    groups = None if check.keep is None else _keep_groups(encoder, check.keep, prompts)
    tries = check.tries if check.tries is not None else (DEFAULT_TRIES_KEEP if groups else 1)
    first = editor.edit(images, [(d.source, d.strength) for d in dirs], generator=generator, **edit_kwargs)
    units_source, units_edit = _image_units(encoder, first.source), _image_units(encoder, first.edited)  # once
    judge = _Judge(dirs, prompts, groups, units_source)
    gains, changed = judge(units_source, units_edit, judge.read_source)
    weak_cols, medians = [], []
    for j in range(len(dirs)):
        mask, ref = weak_faces(gains[:, j], check.share, None if check.references is None else check.references[j])
        weak_cols.append(mask)
        medians.append(ref)
    weak = torch.stack(weak_cols, dim=1)
    search = _Search.start(dirs, weak, changed, first.edited)
    thresholds = torch.tensor([float(check.share) * m for m in medians])
    retry_kwargs = {**edit_kwargs, "reconstruct": False}
    for _ in range(tries):
        active = search.step(float(check.factor))
        if active is None:
            break
        for pattern in sorted({tuple(row.tolist()) for row in search.mult[active]}):
            idx = (active & (search.mult == torch.tensor(pattern, dtype=torch.float64)).all(dim=1)).nonzero().flatten()
            pairs = [(d.source, d.strength * m) for d, m in zip(dirs, pattern)]
            again = editor.edit(images[idx.to(images.device)], pairs, generator=generator, **retry_kwargs)
            g, ch = judge(units_source[idx.to(units_source.device)], _image_units(encoder, again.edited),
                          judge.read_source[idx])
            search.record(idx, again.edited, g < thresholds, ch, keep_better=groups is not None)
    first_edited, first.edited = first.edited, search.edited
    return CheckedEdit(result=first, first_edited=first_edited, gains=gains, weak=weak, median_gains=medians,
                       factor=float(check.factor), share=float(check.share), changed=changed if groups else None,
                       kept=[name for name, _ in groups] if groups else [], extra=search.extra,
                       multipliers=search.chosen_mult.float(), final_weak=search.final_weak,
                       final_changed=search.final_changed if groups else None)


def _checked_inputs(editor, images, directions, check: CheckOptions, edit_kwargs: dict) -> list:
    """The directions of :func:`edit_checked`, every argument checked before any editing."""
    factor, tries, references = check.factor, check.tries, check.references
    if check_number(factor, "factor") <= 1.0:
        raise ValueError(f"factor: expected a strength multiplier above 1, got {factor!r}")
    if tries is not None and (isinstance(tries, bool) or not isinstance(tries, int) or not 1 <= tries <= MAX_TRIES):
        raise ValueError(f"tries: expected a whole number of edits more per face, 1 to {MAX_TRIES}, got {tries!r}")
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
    return dirs


class _Judge:
    """Each direction's CLIP gain on some faces, and how many kept attributes' readings changed."""

    def __init__(self, dirs, prompts, groups, units_source):
        self.dirs, self.prompts, self.groups = dirs, prompts, groups or []
        self.read_source = _readings(units_source, self.groups)

    def __call__(self, src_units, edit_units, read_src):
        g = torch.stack([_gain(src_units, edit_units, ts, tt, d.strength)
                         for d, (ts, tt) in zip(self.dirs, self.prompts)], dim=1)
        changed = (_readings(edit_units, self.groups) != read_src).sum(dim=1)
        return g, changed


@dataclass
class _Search:
    """The search over each face's strength multipliers (faces × directions): the latest ones, their bracket
    (``lo``: weak there, ``hi``: changed too much there), the latest and the kept verdicts, the kept edits."""

    mult: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor
    caps: torch.Tensor  # the largest multiplier per direction
    chosen_mult: torch.Tensor
    extra: torch.Tensor  # edits more per face
    cur_weak: torch.Tensor
    cur_changed: torch.Tensor
    final_weak: torch.Tensor
    final_changed: torch.Tensor
    edited: torch.Tensor

    @classmethod
    def start(cls, dirs, weak: torch.Tensor, changed: torch.Tensor, edited: torch.Tensor) -> "_Search":
        n, n_dirs = weak.shape
        strengths = torch.tensor([d.strength for d in dirs], dtype=torch.float64)
        mult = torch.ones(n, n_dirs, dtype=torch.float64)
        lo = torch.full((n, n_dirs), float("nan"), dtype=torch.float64)
        return cls(mult=mult, lo=lo, hi=lo.clone(), caps=MAX_STRENGTH / strengths.abs(), chosen_mult=mult.clone(),
                   extra=torch.zeros(n, dtype=torch.long), cur_weak=weak.clone(), cur_changed=changed.clone(),
                   final_weak=weak.clone(), final_changed=changed.clone(), edited=edited.clone())

    def step(self, factor: float):
        """The next multipliers of the failing faces (stronger if weak, weaker if changed, halfway once both);
        returns the mask of the faces to edit again, or ``None`` when none moves."""
        failing = self.cur_weak.any(dim=1) | (self.cur_changed > 0)
        new = self.mult.clone()
        for i in failing.nonzero().flatten().tolist():
            for j in range(self.mult.shape[1]):
                if self.cur_changed[i] > 0:
                    self.hi[i, j], up = self.mult[i, j], False
                elif self.cur_weak[i, j]:
                    self.lo[i, j], up = self.mult[i, j], True
                else:
                    continue
                if not (torch.isnan(self.lo[i, j]) or torch.isnan(self.hi[i, j])):
                    m = torch.sqrt(self.lo[i, j] * self.hi[i, j])
                else:
                    m = self.mult[i, j] * factor if up else self.mult[i, j] / factor
                new[i, j] = min(float(m), float(self.caps[j]))
        active = failing & (new != self.mult).any(dim=1)
        if not active.any():
            return None
        self.mult[active] = new[active]
        return active

    def record(self, idx, edited, weak, changed, *, keep_better: bool) -> None:
        """The verdicts of the faces ``idx`` edited again; a new edit is kept when no worse (``keep_better``) or
        always (without it: the one retry)."""
        for k, i in enumerate(idx.tolist()):
            better = (int(weak[k].sum()), int(changed[k])) <= (int(self.final_weak[i].sum()),
                                                                int(self.final_changed[i]))
            if not keep_better or better:
                self.edited[i] = edited[k].to(self.edited.device)
                self.chosen_mult[i], self.final_weak[i], self.final_changed[i] = self.mult[i], weak[k], changed[k]
            self.cur_weak[i], self.cur_changed[i] = weak[k], changed[k]
            self.extra[i] += 1
