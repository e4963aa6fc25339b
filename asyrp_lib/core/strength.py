r"""A trained direction's strength, chosen on fresh samples as CLIP reads them.

f_t is trained to lower a loss, not to reach a given size of edit: one run adds glasses too weakly at strength 1,
another makes a smile at 1 that also changes the hair. Since an Asyrp edit scales with its strength c
(Δh = c · f_t(h_t, t)), the size can be chosen after training, once per direction, with nothing but the prompts:

1. sample ``n`` fresh images from the model (seeded noise x_T, not the training images) and let CLIP read them
   zero-shot: which of them lie nearer the *source* prompt than the target one (the **candidates**, images that
   lack the target);
2. edit the candidates at strengths of a grid (:data:`STRENGTH_GRID`) and, at each, read the share that CLIP now
   puts nearer the target prompt;
3. keep the **smallest** strength whose share reaches the wanted one (``share``, e.g. 0.8: the target on four
   images in five). A larger strength edits more images but changes more of the rest of each face, so the
   smallest that does the job is the one to keep. Between the two strengths of the grid that bracket it (the
   share below the wanted one at the lower, reached at the upper), it is interpolated linearly in log strength:
   a step of √2 overshoots by up to 40 %, more than the margin between an edit too weak and one that changes
   the rest of the face.

The shares are assumed to grow with the strength (the search walks the grid from c = 1, down while the share
holds and up until it is reached). Where no strength of the grid reaches the share, the direction cannot do what
was asked at any size: a larger strength would only change more of the face (a red-hair direction of the toy
world read 0.33 at 2.8 and kept the other attributes on 0.38 of held-out faces), so f_t is kept as trained
(strength 1) and the result says so. Where the smallest strength of the grid already reaches it, that one is
kept. With fewer than :data:`MIN_CANDIDATES`
candidates (CLIP already reads the target on nearly every sample) nothing is chosen and the strength stays 1.

:func:`calibrate_strength` measures; :meth:`asyrp_lib.core.delta_net.DeltaNet.scaled` bakes the chosen strength
into f_t's last layer, so that strength 1 of the saved direction is the chosen one
(:func:`asyrp_lib.core.train.train_direction` does both when the recipe asks for it).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from .._utils import check_int, check_share

__all__ = ["STRENGTH_GRID", "MIN_CANDIDATES", "CALIBRATION_SEED", "StrengthCalibration",
           "crossing", "choose_from_shares", "calibrate_strength"]

#: The strengths tried, ratio about √2 from one to the next (1 is the strength as trained).
STRENGTH_GRID = (0.35, 0.5, 0.7, 1.0, 1.4, 2.0, 2.8)
#: Fewest candidates (samples CLIP reads without the target) worth choosing a strength on.
MIN_CANDIDATES = 8
#: Seed of the fresh samples' noise (other images than the training ones, which are sampled from seed 0 upwards).
CALIBRATION_SEED = 7919


@dataclass
class StrengthCalibration:
    """What :func:`calibrate_strength` found: the strength kept and the share measured at each strength tried."""

    strength: float  # the strength kept (1.0 when nothing was chosen)
    share: float  # the share wanted
    n: int  # fresh samples
    candidates: int  # of them, the images CLIP read without the target
    shares: dict = field(default_factory=dict)  # strength → share of candidates read with the target
    reached: bool = False  # whether a strength of the grid reached the wanted share
    seconds: float = 0.0
    note: str = ""

    def to_dict(self) -> dict:
        """As recorded in a direction's metadata (``strength_calibration``)."""
        return {"strength": self.strength, "share": self.share, "n": self.n, "candidates": self.candidates,
                "shares": {f"{s:g}": round(v, 4) for s, v in sorted(self.shares.items())}, "reached": self.reached,
                "seconds": round(self.seconds, 1), "note": self.note}

    def describe(self) -> str:
        tried = ", ".join(f"{s:g} → {v:.2f}" for s, v in sorted(self.shares.items()))
        if not self.shares:
            return f"strength kept at 1: {self.note}"
        best = max(self.shares, key=lambda c: (self.shares[c], -c))
        how = (f"where CLIP's share of them read with the target reaches {self.share:g}" if self.reached
               else f"kept as trained: no strength reached {self.share:g}, the best was {self.shares[best]:.2f} at "
                    f"{best:g}; a larger strength would only change more of each face; train on more images or "
                    f"epochs, or choose a strength yourself")
        return (f"strength {self.strength:g} ({how}); {self.candidates} of {self.n} fresh samples lacked the "
                f"target; share read with it per strength: {tried}")


def crossing(low: tuple[float, float], high: tuple[float, float], share: float) -> float:
    """The strength at which the share reaches ``share`` between ``low = (strength, share below it)`` and
    ``high = (strength, share at or above it)``, linear in log strength, rounded to 0.01."""
    (s0, v0), (s1, v1) = low, high
    if not (s0 < s1 and v0 < share <= v1):
        raise ValueError(f"crossing: expected strengths {s0:g} < {s1:g} whose shares {v0:g}, {v1:g} bracket {share:g}")
    w = (share - v0) / (v1 - v0)
    return round(math.exp(math.log(s0) + w * (math.log(s1) - math.log(s0))), 2)


def choose_from_shares(measure, share: float, grid=STRENGTH_GRID) -> tuple[float, dict, bool]:
    """(strength, shares measured, reached): where ``measure(strength)`` first reaches ``share`` along ``grid``,
    measuring as few strengths as the walk from 1 needs (down while the share holds, else up until it is
    reached), interpolated between the two strengths that bracket it (:func:`crossing`; the smallest strength
    of the grid where it already reaches the share); where none reaches it, 1 (f_t as trained) with
    ``reached`` False."""
    grid = sorted(float(s) for s in grid)
    if not grid or min(grid) <= 0:
        raise ValueError(f"grid: expected positive strengths, got {grid}")
    shares: dict[float, float] = {}

    def at(i: int) -> float:
        if grid[i] not in shares:
            shares[grid[i]] = float(measure(grid[i]))
        return shares[grid[i]]

    start = min(range(len(grid)), key=lambda i: abs(grid[i] - 1.0))
    if at(start) >= share:
        i = start
        while i > 0 and at(i - 1) >= share:
            i -= 1
        if i == 0:
            return grid[0], shares, True
        return crossing((grid[i - 1], at(i - 1)), (grid[i], at(i)), share), shares, True
    for i in range(start + 1, len(grid)):
        if at(i) >= share:
            return crossing((grid[i - 1], at(i - 1)), (grid[i], at(i)), share), shares, True
    return 1.0, shares, False


@torch.no_grad()
def calibrate_strength(profile, direction, source: str, target: str, *, t_edit: int, t_boost: int, n_steps: int,
                       share: float = 0.8, n: int = 64, grid=STRENGTH_GRID, seed: int = CALIBRATION_SEED,
                       image_size: int | None = None, precision: str = "fp32", batch_size: int = 16,
                       progress: bool = True) -> StrengthCalibration:
    """Choose ``direction``'s strength (a :class:`~asyrp_lib.core.delta_net.DeltaNet`, its folder, or any
    direction the editor takes) on ``n`` fresh samples of ``profile``'s model: the strength at which CLIP reads
    ``target`` (rather than ``source``) on ``share`` of the samples it read as ``source`` before the edit, found
    along ``grid`` (the module docstring). The edits are eq. (6) with ``t_edit``, ``t_boost`` and
    ``n_steps`` DDIM steps, as the direction will edit."""
    from .clip_loss import zero_shot_labels
    from .pipeline import AsyrpEditor
    from .process import Phases

    if check_share(share, "share") == 0:
        raise ValueError("share: expected a share in (0, 1): at 0 every strength reaches it, and nothing is chosen "
                         "(to keep f_t as trained, do not calibrate)")
    check_int(n, "n")
    start = time.perf_counter()
    editor = AsyrpEditor(profile, n_steps=n_steps, progress=False, image_size=image_size, precision=precision,
                         batch_size=batch_size)
    phases = Phases(t_edit=t_edit, t_boost=t_boost)
    size = editor.image_size
    x_T = torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(int(seed)))
    prompts = [source, target]

    def run(x, strength: float | None) -> torch.Tensor:
        dirs = editor.directions([(direction, strength)]) if strength is not None else []
        out = []
        for k, chunk in enumerate(x.split(batch_size)):
            g = torch.Generator().manual_seed(int(seed) + 1 + k)  # the boosting noise, the same at every strength
            edited, _, _ = editor.generate(chunk.to(editor.device), dirs, phases=phases, generator=g,
                                           reconstruct=False)
            out.append(edited.float().cpu())
        return torch.cat(out)

    bar = None
    if progress:
        from .._utils import progress_bar

        bar = progress_bar(None, desc="choosing the strength", total=len(grid) + 1)
    before = zero_shot_labels(profile.clip, run(x_T, None), prompts, target)
    if bar is not None:
        bar.update(1)
    lacking = ~before
    result = StrengthCalibration(strength=1.0, share=float(share), n=int(n), candidates=int(lacking.sum()))
    if result.candidates < MIN_CANDIDATES:
        result.note = (f"CLIP read {target!r} on {n - result.candidates} of {n} fresh samples before any edit: "
                       f"fewer than {MIN_CANDIDATES} lack it, too few to choose a strength on")
    else:
        candidates = x_T[lacking]

        def measure(strength: float) -> float:
            value = float(zero_shot_labels(profile.clip, run(candidates, strength), prompts, target).float().mean())
            if bar is not None:
                bar.update(1)
                bar.set_postfix(strength=f"{strength:g}", share=f"{value:.2f}")
            return value

        result.strength, result.shares, result.reached = choose_from_shares(measure, share, grid)
    if bar is not None:
        bar.close()
    result.seconds = time.perf_counter() - start
    return result
