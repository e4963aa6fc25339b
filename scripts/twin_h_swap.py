"""Does the bottleneck h carry an attribute? The twin test on toy faces.

Each face is rendered twice, differing only in one attribute (e.g. smile 0 and smile 0.9), and both renders are
inverted. Along the first face's own trajectory, h is then replaced by its twin's h at every step t ≥ t_edit
(Δh_t = h_t(twin) − h_t(face), the skip connections untouched), asymmetrically (eq. 4/5) and symmetrically. If h
carried the attribute, the face would take on the twin's value; the oracle reads how often it does.

The twin's inversion noise differs from the face's, and in a model whose decoder reads h that difference
travels with the swap. ``--shared-noise`` takes it out: the twin's h_t is then read at the face's own x_t with
the twins' image difference added, x_t + sqrt(ᾱ_t)·(x_twin − x_face) (the same noise, as in training).

    python scripts/twin_h_swap.py                                  # smile 0 → 0.9, t_edit 580, 300, 0
    python scripts/twin_h_swap.py --attribute glasses --source no --target yes --json twin_glasses.json

Faces come from evaluate.DEV_SEED + 5_000 onwards (development faces, not the held-out range).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asyrp_lib.core import ddim, editing  # noqa: E402
from asyrp_lib.toy import evaluate as ev  # noqa: E402
from asyrp_lib.toy import toyworld as tw  # noqa: E402
from asyrp_lib.core.process import DeltaH, run_process  # noqa: E402


def _value(attribute: str, text: str, flag: str):
    """A value of ``attribute`` from the command line: smile a number in [-1, 1], else one of its values."""
    allowed = tw.ATTRIBUTES[attribute]
    if attribute == "smile":
        try:
            v = float(text)
        except ValueError:
            v = None
        if v is None or not allowed[0] <= v <= allowed[1]:
            raise SystemExit(f"{flag}: smile is a number in [{allowed[0]:g}, {allowed[1]:g}], got {text!r}")
        return v
    if text not in allowed:
        raise SystemExit(f"{flag}: {attribute} is one of {', '.join(allowed)}, got {text!r}")
    return text


def h_trajectory(profile, x_T: torch.Tensor, timesteps, t_edit: int, shift: torch.Tensor | None = None):
    """h_t of the plain DDIM trajectory from ``x_T`` at each step t ≥ ``t_edit`` (a list). With ``shift`` (an
    image difference), in the same pass also h_t read at x_t + sqrt(ᾱ_t)·shift: a pair of lists, plain and
    shifted (the trajectory itself is the plain one)."""
    sched, hs = profile.schedule, profile.hspace
    plain, shifted, x = [], [], x_T
    for t, t_prev in zip(timesteps, ddim.previous_timesteps(timesteps)):
        if t < t_edit:
            break
        enc = hs.encode(x, t)
        plain.append(enc.h)
        if shift is not None:
            shifted.append(hs.encode(x + sched.alpha(t).sqrt() * shift, t).h)
        x = ddim.ddim_step(x, hs.decode(enc), sched.alpha(t), sched.alpha(t_prev)).x_prev
    return plain if shift is None else (plain, shifted)


@torch.no_grad()
def twin_swap(profile, attribute: str, source, target, *, n: int = 48, seed: int = ev.DEV_SEED + 5_000,
              t_edits=(580, 300, 0), scales=(1.0, 2.0), n_steps: int | None = None,
              shared_noise: bool = False) -> list[dict]:
    """One row per (t_edit, scale, asymmetric): the share of faces the oracle reads with the twin's value
    (``success``), the share keeping every other attribute, and LPIPS to the source render. ``shared_noise``:
    the twin's h_t read on the face's own trajectory (module docstring) instead of the twin's inversion."""
    size = profile.image_size
    attrs = tw.sample_attributes(n, seed=seed)
    x_src = tw.render([dict(a, **{attribute: source}) for a in attrs], size=size)
    x_twin = tw.render([dict(a, **{attribute: target}) for a in attrs], size=size)
    want = ev.label_of({attribute: target}, attribute)
    ts = editing.schedule_steps(profile, n_steps)
    refine = getattr(profile, "invert_refine", 0)
    dev = profile.hspace.device
    x_T = ddim.invert(profile.unet, x_src.to(dev), ts, profile.schedule, refine=refine, progress=False)
    x_T_twin = None if shared_noise else ddim.invert(profile.unet, x_twin.to(dev), ts, profile.schedule,
                                                       refine=refine, progress=False)
    oracle = tw.Oracle.load(device=dev)
    # both h trajectories once, down to the lowest t_edit: each t_edit's swap uses the steps t >= t_edit of them
    first = min(t_edits)
    steps = editing.edit_timesteps(ts, first, profile.schedule.num_train_timesteps)
    if shared_noise:
        h_src, h_twin = h_trajectory(profile, x_T, ts, first, shift=(x_twin - x_src).to(dev))
    else:
        h_src, h_twin = h_trajectory(profile, x_T, ts, first), h_trajectory(profile, x_T_twin, ts, first)
    delta = {t: b - a for t, a, b in zip(steps, h_src, h_twin)}
    rows = []
    for t_edit in t_edits:
        for scale in scales:
            for asymmetric in (True, False):
                def swap(h, t, scale=scale):
                    return scale * delta[int(torch.as_tensor(t).flatten()[0])]
                images, _, _ = run_process(profile.hspace, x_T, ts, profile.schedule, edit=DeltaH(swap),
                                           t_edit=t_edit, asymmetric=asymmetric, progress=False)
                m = ev.edit_metrics(x_src, images.cpu(), attribute=attribute, target_value=want, oracle=oracle,
                                    lpips=profile.lpips)
                rows.append({"t_edit": int(t_edit), "scale": scale, "asymmetric": asymmetric, "n": n,
                             "success": m["success"], "others_kept": m["others_kept"], "lpips": m["lpips"],
                             "source_success": m["source_success"], "shared_noise": shared_noise})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="toy", help="a toy-world profile (default toy)")
    p.add_argument("--attribute", default="smile", choices=list(tw.ATTRIBUTES))
    p.add_argument("--source", default="0.0", help="the faces' value (smile: a number in [-1, 1])")
    p.add_argument("--target", default="0.9", help="the twins' value")
    p.add_argument("--n", type=int, default=48, help="faces (default 48)")
    p.add_argument("--t-edit", type=int, action="append", default=None, help="repeatable (default 580, 300, 0)")
    p.add_argument("--shared-noise", action="store_true",
                   help="read the twin's h on the face's own trajectory (same noise) instead of the twin's inversion")
    p.add_argument("--json", default=None, help="also write the rows to this file")
    args = p.parse_args(argv)
    source, target = _value(args.attribute, args.source, "--source"), _value(args.attribute, args.target, "--target")
    from asyrp_lib.models.profiles import load_profile

    profile = load_profile(args.profile)
    if not profile.is_toy:
        raise SystemExit(f"--profile: the twin test needs the toy world's oracle (profile 'toy'), got {args.profile!r}")
    rows = twin_swap(profile, args.attribute, source, target, n=args.n, t_edits=tuple(args.t_edit or (580, 300, 0)),
                     shared_noise=args.shared_noise)
    print(f"{args.attribute}: {args.source} → {args.target}, {args.n} faces; h swapped for the twin's at t ≥ t_edit"
          + (" (the twin's h read with the face's noise)" if args.shared_noise else ""))
    print("| t_edit | Δh scale | process | reads as the twin | others kept | LPIPS |\n|---:|---:|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['t_edit']} | {r['scale']:g} | {'asymmetric' if r['asymmetric'] else 'symmetric'} | "
              f"{r['success']:.2f} | {r['others_kept']:.2f} | {r['lpips']:.3f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
