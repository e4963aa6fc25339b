"""The ``asyrp`` command line (also ``python -m asyrp_lib``): ``sample``, ``train``, ``edit``, ``intervals``,
``demo``, ``evaluate`` and ``grade`` (the course's exercises in a folder of submitted notebooks).

Every subcommand takes ``--profile`` (default ``toy``), ``--device`` and ``--help``; bad input ends with an
error that names the flag it concerns (``--t-edit: …``) and exit code 2, with nothing written. A run that did only
part of its work ends with exit code 1: a diverged training run, or ``asyrp edit`` on a folder where some files
could not be read (the others are edited; the unreadable ones are listed with the reason).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .._args import positive_float_arg, positive_int_arg, seconds_arg, timestep_arg

__all__ = ["main", "build_parser", "parse_direction", "directions_dir", "COMPARE_MAX", "EVALUATE_PROFILES"]

#: ``asyrp edit --compare`` shows at most this many images (the grid of a large folder would be unreadable).
COMPARE_MAX = 16
#: Profiles ``asyrp evaluate`` accepts: the toy world's, and ``tiny`` (random weights on toy faces, for tests).
EVALUATE_PROFILES = ("toy", "tiny")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default="toy",
                   help="model profile: toy (offline, default), celebahq (model hub, GPU), tiny (random, tests), "
                        "or a hub id / local folder of a UNet2DModel")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    p.add_argument("--clip", default=None, metavar="HUB_ID_OR_FOLDER",
                   help="another CLIP for the profile (default: the profile's own; hub models use "
                        "openai/clip-vit-base-patch16)")


def _factor(value: str) -> float:
    """The CLIP check's strength multiplier: a finite number above 1 (``retry.edit_checked``'s ``factor``)."""
    try:
        v = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a strength multiplier above 1, such as 1.5, got {value!r}") \
            from None
    if not 1 < v < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a strength multiplier above 1, such as 1.5, got {value!r}")
    return v


def _share(value: str) -> float:
    """A number in [0, 1), checked as the library checks it (``check_share``)."""
    from .._utils import check_share

    try:
        return check_share(float(value), "share")
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a share in [0, 1), got {value!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asyrp", description="Semantic image editing in the h-space of "
                                     "diffusion models (Asyrp): the asyrp-course command line.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in (_add_sample, _add_train, _add_edit, _add_intervals, _add_demo, _add_evaluate, _add_grade):
        add(sub)
    return parser


def _add_sample(sub) -> None:
    p = sub.add_parser("sample", help="DDIM samples from the profile's diffusion model, as a PNG grid")
    _common(p)
    p.add_argument("--output", default="samples.png", help="PNG file to write (default: samples.png)")
    p.add_argument("--n", type=positive_int_arg, default=8, help="number of samples (default 8)")
    p.add_argument("--steps", type=positive_int_arg, default=None, help="DDIM steps (default: the profile's)")
    p.add_argument("--eta", type=float, default=0.0, help="η in [0, 1]: 0 deterministic DDIM, 1 DDPM-like")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_sample)


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a direction f_t for a (source, target) text pair",
                       description="Train f_t(h_t, t) → Δh_t so that editing moves images from the source text "
                                   "towards the target text (directional CLIP loss + L1). Writes a checkpoint "
                                   "folder as it goes (every --save-every seconds and after every epoch); "
                                   "--resume continues an interrupted run from the last one.")
    _common(p)
    p.add_argument("--source", default=None, help='what the images show now, e.g. "face" (required unless --resume)')
    p.add_argument("--target", default=None, help='what the edit should make of them, e.g. "smiling face"')
    p.add_argument("--output", required=True, help="folder for the trained direction (checkpoints)")
    p.add_argument("--images", default=None, help="folder (or file) of training images (default: sample them)")
    p.add_argument("--n-images", type=positive_int_arg, default=16, help="images to sample when --images is not "
                   "given (default 16)")
    p.add_argument("--steps", type=positive_int_arg, default=None, help="DDIM steps (default: the profile's)")
    p.add_argument("--epochs", type=positive_int_arg, default=1, help="passes over the images (default 1)")
    p.add_argument("--batch-size", type=positive_int_arg, default=4, help="images per batch (default 4)")
    p.add_argument("--recipe", choices=("profile", "paper"), default="profile",
                   help="where the learning rate, λ_L1, t_edit and the L1 options come from when not given: the "
                        "profile's own recipe, measured to work there (default; printed when training starts), or "
                        "the paper's (λ_L1 3, t_edit from the LPIPS rule, Adam 0.1)")
    p.add_argument("--lr", type=positive_float_arg, default=None, help="Adam learning rate (default: the recipe's)")
    p.add_argument("--t-edit", type=timestep_arg, default=None, help="edit for t ≥ T_EDIT (default: the recipe's; "
                   "with --recipe paper, from the LPIPS curve, see asyrp intervals)")
    p.add_argument("--t-boost", type=timestep_arg, default=None, help="quality boosting below T_BOOST (default: from "
                   "the LPIPS curve)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-every", type=seconds_arg, default=60.0, metavar="SECONDS",
                   help="checkpoint at least this often during an epoch (default 60; 0: only after each epoch)")
    p.add_argument("--lambda-l1", type=positive_float_arg, default=None, metavar="λ",
                   help="weight of the L1 term that keeps P_t^edit near P_t (default: the recipe's; larger "
                        "keeps more of the image and edits less)")
    p.add_argument("--l1-target", choices=("unedited", "current"), default=None,
                   help="what the L1 term compares P_t^edit with: P_t of the unedited trajectory (the paper's, as "
                        "every recipe has it) or P_t at the edited latent")
    p.add_argument("--l1-spare", type=_share, default=None, metavar="SHARE",
                   help="share of each image's most-changed pixels the L1 term leaves out, so that a large edit "
                        "keeps its region while the rest of the face is held (default: the recipe's; 0 is the "
                        "plain mean, the paper's)")
    p.add_argument("--strength-share", type=_share, default=None, metavar="SHARE",
                   help="after training, choose the strength on fresh samples: where CLIP reads the target on "
                        "this share of the samples that lacked it, baked into the direction "
                        "(default: the recipe's, 0.8 on the toy profile; 0 keeps f_t as trained, the paper's)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --output")
    p.add_argument("--attribute", default=None, help="toy world: the attribute this direction should change "
                   "(e.g. smile), recorded in the checkpoint for asyrp evaluate")
    p.add_argument("--value", default=None, help="toy world: the value it should reach (e.g. smiling)")
    p.set_defaults(func=_cmd_train)


def _add_retry(p) -> None:
    p.add_argument("--retry", type=_factor, nargs="?", const=1.5, default=None, metavar="FACTOR",
                   help="check each edit with CLIP and edit the images it barely moved once more at FACTOR × the "
                        "strength (default 1.5; asyrp_lib.beyond.retry; needs at least 8 images)")
    p.add_argument("--keep", action="store_true",
                   help="with the CLIP check (implies --retry): also read the profile's other attributes with CLIP "
                        "(its keep prompts) and edit an image whose reading changed again, weaker; up to 3 edits "
                        "more per image")


def _check_flag(args) -> str:
    """The option that asked for the CLIP check, for messages: --keep (which implies --retry) or --retry."""
    return "--keep" if getattr(args, "keep", False) else "--retry"


def _keep_option(args, profile) -> dict:
    """edit_checked's ``keep=`` for --keep (the profile's keep prompts; --keep implies --retry); {} without it."""
    if not getattr(args, "keep", False):
        return {}
    if not profile.keep_prompts:
        raise ValueError(f"--keep: the {profile.name!r} profile names no attributes to keep (keep_prompts)")
    if args.retry is None:
        args.retry = 1.5
    return {"keep": profile.keep_prompts}


def _add_edit(sub) -> None:
    p = sub.add_parser("edit", help="edit images with one or more trained directions",
                       description="Invert each input image, edit it with the asymmetric reverse process (eq. 6) "
                                   "and write one edited PNG per input, with the same file name.")
    _common(p)
    p.add_argument("--direction", action="append", required=True, metavar="DIR_OR_NAME[:STRENGTH]",
                   help="a direction folder (from asyrp train) or the name of a shipped direction in "
                        "data/directions/, optionally with a strength in [-5, 5] (default 1); repeat to combine")
    p.add_argument("--input", required=True, help="an image file or a folder of images")
    p.add_argument("--output", required=True, help="folder for the edited PNGs")
    p.add_argument("--t-edit", type=timestep_arg, default=None, help="default: the direction's own")
    p.add_argument("--t-boost", type=timestep_arg, default=None, help="default: the direction's own")
    p.add_argument("--steps", type=positive_int_arg, default=None, help="DDIM steps (default: those the direction "
                   "was trained with)")
    p.add_argument("--seed", type=int, default=0, help="seed of the quality-boosting noise")
    # _utils.PRECISIONS, written out: the parser is built without importing torch
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="U-Net arithmetic: fp32 (default) or bf16 autocast, about 1.6× faster on a CPU with bf16 "
                        "support and on GPUs; its error against fp32 is in benchmarks/README.md")
    p.add_argument("--compare", default=None, metavar="FILE.png",
                   help=f"also write a grid: inputs / reconstructions / edits (of the first {COMPARE_MAX} images)")
    p.add_argument("--batch-size", type=positive_int_arg, default=None,
                   help="images loaded, edited and written together; a folder goes through in chunks of this size, "
                        "so it never sits on the device whole (default: 4 images of 256×256, more of smaller ones, "
                        "asyrp_lib.core.pipeline.default_batch_size); lower it if the GPU runs out of memory")
    _add_retry(p)
    p.set_defaults(func=_cmd_edit)


def _add_intervals(sub) -> None:
    p = sub.add_parser("intervals", help="compute t_edit and t_boost from the LPIPS curves; save the curves",
                       description="LPIPS(x, P_t) and γ_t = LPIPS(x, x_t) over t on a few images; t_edit is "
                                   "where LPIPS(x, P_t) reaches its threshold (scaled by the prompts' text cosine), "
                                   "t_boost where γ_t reaches its threshold.")
    _common(p)
    p.add_argument("--source", required=True)
    p.add_argument("--target", required=True)
    p.add_argument("--images", default=None, help="folder (or file) of images (default: sample them)")
    p.add_argument("--n-images", type=positive_int_arg, default=8, help="images to sample (default 8)")
    p.add_argument("--steps", type=positive_int_arg, default=None, help="DDIM steps for sampling images")
    p.add_argument("--points", type=positive_int_arg, default=50, help="timesteps on each curve (default 50)")
    p.add_argument("--edit-lpips", type=positive_float_arg, default=None, help="threshold on LPIPS(x, P_t) (default: the profile's)")
    p.add_argument("--boost-lpips", type=positive_float_arg, default=None, help="threshold on γ_t = LPIPS(x, x_t) (default: the profile's)")
    p.add_argument("--output", default="intervals", help="file prefix for PREFIX.json and PREFIX.png "
                   "(default: intervals)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_intervals)


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="the main job: edit a few toy faces with the shipped directions; "
                       "writes a before/after grid",
                       description="Render toy faces, invert them once, edit them with each shipped direction "
                                   "(data/directions/) or the given ones, and write one grid: the faces, then one "
                                   "row per direction.")
    _common(p)
    p.add_argument("--output", default="demo.png", help="PNG file to write (default: demo.png)")
    p.add_argument("--direction", action="append", default=None, metavar="DIR_OR_NAME[:STRENGTH]",
                   help="directions to show (default: every shipped one); repeatable")
    p.add_argument("--n", type=positive_int_arg, default=6, help="number of faces (default 6)")
    p.add_argument("--seed", type=int, default=0, help="which faces (toy world seed)")
    p.add_argument("--steps", type=positive_int_arg, default=None, help="DDIM steps (default: the directions')")
    p.set_defaults(func=_cmd_demo)


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="toy world: measure one direction with the oracle; prints JSON",
                       description="Edit held-out toy faces that do not yet show the target, then measure with "
                                   "the toy-world oracle: edit success, the share of faces whose other "
                                   "attributes are all kept, LPIPS to the source, directional CLIP similarity.")
    _common(p)
    p.add_argument("--direction", required=True, metavar="DIR_OR_NAME[:STRENGTH]")
    p.add_argument("--attribute", default=None, help="the toy attribute the direction should change, e.g. smile "
                   "(default: the one recorded in the direction, as for the shipped ones)")
    p.add_argument("--value", default=None, help="the value it should reach, e.g. smiling, yes, closed, red "
                   "(default: the direction's)")
    p.add_argument("--n", type=positive_int_arg, default=32, help="number of held-out faces (default 32)")
    p.add_argument("--seed", type=int, default=None, help="first toy-world seed (default: the held-out range)")
    p.add_argument("--steps", type=positive_int_arg, default=None, help="DDIM steps (default: the direction's)")
    _add_retry(p)
    p.add_argument("--output", default=None, metavar="FILE.json", help="also write the metrics here")
    p.set_defaults(func=_cmd_evaluate)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr)


def _check_prompts(source, target) -> None:
    from .._utils import check_prompt_pair

    check_prompt_pair(source, target, names=("--source", "--target"))


def _check_intervals_given(args) -> None:
    """--t-boost ≤ --t-edit when both are given (their upper bound needs the model: :func:`_check_against_model`)."""
    if args.t_edit is not None and args.t_boost is not None and args.t_boost > args.t_edit:
        raise ValueError(f"--t-boost: expected --t-boost ≤ --t-edit (quality boosting comes after editing), got "
                         f"--t-boost {args.t_boost} > --t-edit {args.t_edit}")


def _check_against_model(args, prof) -> None:
    """The flags bounded by the model's number of timesteps T: --steps (and --points) ≤ T, --t-edit and --t-boost
    in [0, T - 1]."""
    T = prof.schedule.num_train_timesteps
    for flag in ("--steps", "--points"):
        v = getattr(args, flag[2:], None)
        if v is not None and v > T:
            raise ValueError(f"{flag}: expected at most {T} (the model's number of timesteps T), got {v}")
    for flag in ("--t-edit", "--t-boost"):
        v = getattr(args, flag[2:].replace("-", "_"), None)
        if v is not None and v > T - 1:
            raise ValueError(f"{flag}: expected a timestep in [0, {T - 1}] (the model has T = {T}), got {v}")


def _image_files(path, flag: str) -> list[Path]:
    """The image files of ``path`` (a file, or the images directly inside a folder), errors naming ``flag``."""
    from ..images import image_files

    try:
        return image_files(path)
    except ValueError as exc:
        raise ValueError(f"{flag}: {exc}") from None


def _readable(files: list[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """(the files that can be read as images, [(file, why not)] for the others), each read once in full."""
    from ..images import load_image

    ok, bad = [], []
    for f in files:
        try:
            load_image(f, 8, verbose=False)
        except ValueError as exc:
            why = str(exc)
            bad.append((f, why[len(f"{f}: "):] if why.startswith(f"{f}: ") else why))
        else:
            ok.append(f)
    return ok, bad


def _listing(bad: list[tuple[Path, str]]) -> str:
    return "\n".join(f"  {f}: {why}" for f, why in bad)


def _all_readable(path, flag: str, use: str) -> None:
    """Refuse ``path`` (naming ``flag``) unless every image file in it can be read; ``use`` says why all."""
    files = _image_files(path, flag)
    ok, bad = _readable(files)
    if bad:
        raise ValueError(f"{flag}: {len(bad)} of {len(files)} image file(s) cannot be read ({use}; remove or "
                         f"replace them):\n{_listing(bad)}")


def _check_output_folder(args, what: str) -> None:
    out = Path(args.output).expanduser()
    if out.exists() and not out.is_dir():
        raise ValueError(f"--output: {out} is a file; expected a folder for {what}")


def _cmd_train(args) -> int:
    from ..core.delta_net import WEIGHTS_NAME
    from ..models.profiles import PAPER_RECIPE, load_profile
    from ..core.train import STATE_NAME, TrainConfig, train_direction

    _check_output_folder(args, "the direction's checkpoints")
    out = Path(args.output).expanduser()
    resuming = args.resume and (out / STATE_NAME).is_file()
    if args.resume and not resuming and (args.source is None or args.target is None):
        if not out.exists():
            what = f"there is no folder {out}"
        elif (out / WEIGHTS_NAME).is_file():
            what = (f"{out} holds a trained direction but not its training state ({STATE_NAME}), so its training "
                    f"cannot go on")
        else:
            what = f"{out} holds no training state ({STATE_NAME}): no run was started there"
        raise ValueError(f"--resume: nothing to resume: {what}. To start a new run, give --source and --target "
                         f"(--output may stay the same)")
    if not args.resume and ((out / WEIGHTS_NAME).is_file() or (out / STATE_NAME).is_file()):
        raise ValueError(f"--output: {out} already holds a trained direction; continue its training with --resume, "
                         f"or choose another folder")
    if not resuming:
        _check_prompts(args.source, args.target)
    _check_intervals_given(args)
    if args.attribute is not None or args.value is not None:
        if args.attribute is None or args.value is None:
            raise ValueError("--attribute, --value: give both (the toy attribute the direction changes and the value "
                             "it should reach, e.g. --attribute smile --value smiling) or neither")
        _target_of(args, {})
    if args.images is not None:
        _all_readable(args.images, "--images", "training uses every image it is given")
    prof = load_profile(args.profile, device=args.device, clip=args.clip)
    _log(str(prof))
    _check_against_model(args, prof)
    cfg = TrainConfig(source=args.source or "", target=args.target or "",
                      n_steps=args.steps or prof.default_steps, recipe=args.recipe, t_edit=args.t_edit,
                      t_boost=args.t_boost, epochs=args.epochs, batch_size=args.batch_size, n_images=args.n_images,
                      seed=args.seed, save_every_seconds=args.save_every, l1_target=args.l1_target,
                      l1_spare=args.l1_spare, lr=args.lr, lambda_l1=args.lambda_l1,
                      strength_share=args.strength_share)
    if not resuming:
        resolved = cfg.resolved(prof).validate()
        given = {"lr": args.lr, "lambda_l1": args.lambda_l1, "t_edit": args.t_edit, "l1_spare": args.l1_spare,
                 "strength_share": args.strength_share}
        recipe = prof.recipe if args.recipe == "profile" else PAPER_RECIPE
        changed = ", ".join(f"{k.replace('_', '-')} {v:g}" for k, v in given.items() if v is not None)
        _log(f"training with the {recipe.describe()}" + (f"; given: {changed}" if changed else "")
             + f" → lr {resolved.lr:g}, λ_L1 {resolved.lambda_l1:g}, L1 spare {resolved.l1_spare:g}, t_edit "
             + (f"{resolved.t_edit}" if resolved.t_edit is not None else "from the LPIPS rule")
             + (f", strength for a CLIP share of {resolved.strength_share:g}" if resolved.strength_share
                else ", strength as trained"))
    start = time.perf_counter()
    extra = {k: v for k, v in (("attribute", args.attribute), ("value", args.value)) if v is not None}
    res = train_direction(prof, cfg, args.output, images=args.images, resume=args.resume, metadata=extra)
    last = res.history[-1] if res.history else {}
    strength = f", strength {res.calibration.strength:g} baked in" if res.calibration is not None else ""
    _log(f"wrote {res.output} ({res.steps} steps, t_edit={res.t_edit}, t_boost={res.t_boost}{strength}, "
         f"last loss {last.get('loss', float('nan')):.4f}, {time.perf_counter() - start:.1f} s)")
    return 0


def directions_dir() -> Path:
    """Where the shipped directions live (:func:`asyrp_lib.core.delta_net.directions_dir`; torch is imported only
    when a command needs it)."""
    from ..core.delta_net import directions_dir as where

    return where()


def parse_direction(spec: str) -> tuple[Path, float]:
    """``DIR_OR_NAME[:STRENGTH]`` → (checkpoint folder, strength); names resolve to ``data/directions/<name>``."""
    from ..core.delta_net import shipped_directions

    path, strength = spec, 1.0
    head, sep, tail = spec.rpartition(":")
    if sep:
        try:
            strength = float(tail)
            path = head
        except ValueError:
            pass  # a ':' that is part of the path
    if sep and path == head:
        from ..core.pipeline import MAX_STRENGTH

        if not -MAX_STRENGTH <= strength <= MAX_STRENGTH:
            raise ValueError(f"--direction: the strength in {spec!r} must lie in [{-MAX_STRENGTH:g}, "
                             f"{MAX_STRENGTH:g}], got {tail}")
    p = Path(path).expanduser()
    if p.is_dir():
        return p, strength
    shipped = shipped_directions()
    if "/" not in path and "\\" not in path and path in shipped:
        return shipped[path], strength
    avail = ", ".join(shipped) if shipped else "none shipped yet"
    raise ValueError(f"--direction: {path!r} is neither a direction folder nor the name of a shipped direction "
                     f"(available: {avail}); train one with asyrp train --output DIR")


def _editor_for(args, dirs):
    """The profile, an ``AsyrpEditor`` and the image size / DDIM steps the first direction was trained with."""
    from ..core.delta_net import DeltaNet
    from ..core.pipeline import AsyrpEditor
    from ..models.profiles import load_profile

    metas = [DeltaNet.read_metadata(p) for p, _ in dirs]
    if hasattr(args, "t_edit"):
        _check_intervals_given(args)
    prof = load_profile(args.profile, device=args.device, clip=args.clip)
    _log(str(prof))
    _check_against_model(args, prof)
    size = metas[0].get("image_size") or prof.image_size
    steps = args.steps or metas[0].get("steps") or prof.default_steps
    editor = AsyrpEditor(prof, n_steps=steps, image_size=size, precision=getattr(args, "precision", "fp32"))
    return prof, editor, size, steps, metas


def _cmd_edit(args) -> int:
    """Load, edit and write the images chunk by chunk (``--batch-size``): a folder of any size never sits on the
    device whole, and the PNGs equal those of ``AsyrpEditor.edit`` on all images at once with that batch size
    (the same chunks, one boosting-noise generator)."""
    import torch

    from .._utils import progress_bar
    from ..images import load_image, save_images

    dirs = [parse_direction(s) for s in args.direction]
    if args.compare is not None and Path(args.compare).suffix.lower() != ".png":
        raise ValueError(f"--compare: expected a .png file name, got {args.compare!r}")
    _check_output_folder(args, "the edited PNGs")
    found, files, unreadable = _edit_inputs(args)
    _, editor, size, steps, _ = _editor_for(args, dirs)
    editor.cache.max_memory = 0  # each image is inverted once: keep no inversions in memory
    batch = args.batch_size or editor.batch_size
    chunks = [files[i:i + batch] for i in range(0, len(files), batch)]
    if len(chunks) > 1:
        editor.progress = False  # one bar over the chunks instead of two per chunk
    directions = [(str(p), c) for p, c in dirs]
    generator = torch.Generator().manual_seed(args.seed)
    n_grid = min(len(files), COMPARE_MAX) if args.compare is not None else 0
    grid = ([], [], [])  # inputs, reconstructions, edits of the first n_grid images (on the CPU)
    keep = _keep_option(args, editor.profile)
    if args.retry is not None:
        _check_retry_chunks(args, chunks, len(files), batch)
    start, written, res, references, retried = time.perf_counter(), 0, None, None, 0
    for chunk in progress_bar(chunks, enabled=len(chunks) > 1, unit="chunk",
                              desc=f"Editing {len(files)} images, {batch} at a time"):
        images = torch.cat([load_image(f, size) for f in chunk])
        need = n_grid - written if written < n_grid else 0
        kw = dict(t_edit=args.t_edit, t_boost=args.t_boost, generator=generator, reconstruct=need > 0,
                  batch_size=batch)
        res, checked = _edit_one_chunk(args, editor, images, directions, kw, references, keep)
        if checked is not None:
            references = references or checked.median_gains
            retried += int(checked.retried.sum())
            kept_groups = checked.kept
        save_images(res.edited, args.output, [f.name for f in chunk])
        if need > 0:
            for rows, x in zip(grid, (res.source, res.reconstruction, res.edited)):
                rows.append(x[:need].cpu())
        written += len(chunk)
        del images
    if args.compare is not None:
        _save_compare(args, grid, n_grid, len(files), size)
    _log(f"wrote {written} edited image(s) to {args.output} ({steps} DDIM steps, t_edit={res.t_edit}, "
         f"t_boost={res.t_boost}, strengths {', '.join(f'{c:g}' for c in res.strengths)}, "
         f"{len(chunks)} chunk(s) of at most {batch}, {time.perf_counter() - start:.1f} s)"
         + ("" if args.retry is None else
            f"; the CLIP check edited {retried} of them again at {args.retry:g}× the strength" if not keep else
            f"; the CLIP check (keeping {', '.join(kept_groups)}) edited {retried} of them again, stronger or "
            f"weaker (× or ÷ {args.retry:g})"))
    if unreadable:
        _log(f"asyrp edit: error: {len(unreadable)} of the {len(found)} image files in {args.input} could not be "
             f"read and were not edited:\n{_listing(unreadable)}")
        return 1
    return 0


def _edit_one_chunk(args, editor, images, directions, kw: dict, references, keep: dict):
    """One chunk of ``asyrp edit``: (the EditResult, the CLIP check's CheckedEdit or ``None``). A last chunk too
    small for its own median is judged by the first chunk's (``references``)."""
    import torch

    try:
        if args.retry is None:
            return editor.edit(images, directions, **kw), None
        from ..beyond.retry import MIN_BATCH, edit_checked

        checked = edit_checked(editor, images, directions, factor=args.retry,
                               references=references if images.shape[0] < MIN_BATCH else None, **keep, **kw)
        return checked.result, checked
    except torch.OutOfMemoryError as exc:
        batch = kw["batch_size"]
        raise ValueError(f"--batch-size: {batch} images at a time do not fit in the memory of "
                         f"{editor.device} ({str(exc).splitlines()[0]}); try --batch-size {max(1, batch // 2)}") \
            from None


def _edit_inputs(args) -> tuple[list, list, list]:
    """``asyrp edit``'s input files: (all image files found, the readable ones, (file, why) of the others); refused
    when none can be read, noted when some cannot."""
    found = _image_files(args.input, "--input")
    files, unreadable = _readable(found)
    if not files:
        if not Path(args.input).expanduser().is_dir():
            raise ValueError(f"--input: {found[0]}: {unreadable[0][1]}")
        raise ValueError(f"--input: no image in {args.input} can be read ("
                         + ("its only image file" if len(found) == 1 else f"all {len(found)} image files")
                         + f"), so there is nothing to edit:\n{_listing(unreadable)}")
    if unreadable:
        _log(f"note: {len(unreadable)} of the {len(found)} image files in {args.input} cannot be read; editing the "
             f"other {len(files)} (the unreadable ones are listed at the end)")
    return found, files, unreadable


def _check_retry_chunks(args, chunks: list, n_files: int, batch: int) -> None:
    """The CLIP check's median needs a full first chunk."""
    from ..beyond.retry import MIN_BATCH

    if len(chunks[0]) < MIN_BATCH:
        raise ValueError(f"{_check_flag(args)}: the CLIP check compares each image with the median of its chunk, which needs at "
                         f"least {MIN_BATCH} images; " + (
                             f"got {n_files} image(s)" if n_files < MIN_BATCH else
                             f"the chunks hold {batch}: give --batch-size {MIN_BATCH} or more"))


def _save_compare(args, grid, n_grid: int, n_files: int, size: int) -> None:
    """``--compare``: inputs, reconstructions and edits of the first images, one row each."""
    import torch

    from .plotting import save_grid

    save_grid(torch.cat([torch.cat(rows) for rows in grid]), args.compare, ncol=n_grid, scale=max(1, 96 // size))
    shown = f"the first {n_grid} of {n_files} images" if n_grid < n_files else f"{n_grid} image(s)"
    _log(f"wrote {args.compare} (rows: inputs, reconstructions, edits; {shown})")


def _cmd_intervals(args) -> int:
    from ..images import load_images
    from ..models.profiles import load_profile
    from ..core.intervals import find_intervals
    from ..core.train import sample_training_images

    _check_prompts(args.source, args.target)
    if args.images is not None:
        _all_readable(args.images, "--images", "the curves are means over every image")
    prof = load_profile(args.profile, device=args.device, clip=args.clip)
    _log(str(prof))
    _check_against_model(args, prof)
    if args.images is not None:
        images, _ = load_images(args.images, prof.image_size)
    else:
        images = sample_training_images(prof, args.n_images, n_steps=args.steps, seed=args.seed)
    res = find_intervals(prof, images, args.source, args.target, edit_lpips=args.edit_lpips,
                         boost_lpips=args.boost_lpips, points=args.points, seed=args.seed)
    prefix = Path(args.output)
    if prefix.suffix.lower() in (".json", ".png"):
        prefix = prefix.with_suffix("")
    res.save(prefix.with_name(prefix.name + ".json"), prefix.with_name(prefix.name + ".png"))
    print(f"t_edit = {res.t_edit}")
    print(f"t_boost = {res.t_boost}")
    _log(f"{'(cached) ' if res.cached else ''}LPIPS(x, P_t) threshold {res.edit_threshold:.3f}, γ_t threshold "
         f"{res.boost_threshold:.3f}, {res.n_images} images; wrote {prefix}.json and {prefix}.png")
    return 0


def _cmd_demo(args) -> int:
    import torch

    from ..toy import toyworld
    from .plotting import save_grid

    out = Path(args.output)
    if out.suffix.lower() != ".png":
        raise ValueError(f"--output: expected a .png file name, got {args.output!r}")
    from ..core.delta_net import shipped_directions

    specs = args.direction or list(shipped_directions())
    if not specs:
        raise ValueError(f"no directions to show: {directions_dir()} holds no shipped direction; give one with "
                         f"--direction DIR (train it with asyrp train --output DIR)")
    dirs = [parse_direction(spec) for spec in specs]
    _, editor, size, steps, metas = _editor_for(args, dirs)
    faces = toyworld.render(toyworld.sample_attributes(args.n, seed=args.seed), size=size)
    start = time.perf_counter()
    rows = [faces]
    for (path, strength), meta in zip(dirs, metas):
        res = editor.edit(faces, [(str(path), strength)], generator=torch.Generator().manual_seed(args.seed),
                          reconstruct=False)
        rows.append(res.edited.cpu())
        _log(f"{path.name} ({meta.get('source')!r} → {meta.get('target')!r}, strength {strength:g}): "
             f"t_edit={res.t_edit}, t_boost={res.t_boost}")
    save_grid(torch.cat(rows), out, ncol=args.n, scale=max(1, 96 // size))
    _log(f"wrote {out}: rows = the faces, then {', '.join(p.name for p, _ in dirs)} "
         f"({steps} DDIM steps, {time.perf_counter() - start:.1f} s)")
    return 0


def _target_of(args, meta: dict) -> tuple[str, str]:
    """(attribute, value) to evaluate: the arguments, else those recorded in the direction's checkpoint."""
    from ..toy import toyworld

    attribute = args.attribute or meta.get("attribute")
    value = args.value or meta.get("value")
    if attribute is None or value is None:
        raise ValueError("--attribute, --value: this direction does not record which toy attribute it changes "
                         "(shipped directions do); give them, e.g. --attribute smile --value smiling")
    if attribute not in toyworld.ATTRIBUTES:
        raise ValueError(f"--attribute: expected one of {', '.join(toyworld.ATTRIBUTES)}, got {attribute!r}")
    allowed = toyworld.SMILE_LABELS if attribute == "smile" else toyworld.ATTRIBUTES[attribute]
    if value not in allowed:
        raise ValueError(f"--value: expected one of {', '.join(allowed)} for {attribute}, got {value!r}")
    return attribute, value


def _cmd_evaluate(args) -> int:
    import json

    from ..toy import evaluate, toyworld
    from ..core.clip_loss import DirectionalCLIPLoss
    from ..core.delta_net import DeltaNet

    _check_evaluate_args(args)
    path, strength = parse_direction(args.direction)
    attribute, value = _target_of(args, DeltaNet.read_metadata(path))
    prof, editor, size, steps, (meta,) = _editor_for(args, [(path, strength)])
    if not prof.is_toy:
        _log(f"note: the {prof.name!r} profile edits toy faces with random weights (for tests); the numbers mean little")
    keep = _keep_option(args, editor.profile)
    if args.retry is not None:
        from ..beyond.retry import MIN_BATCH

        if args.n < MIN_BATCH:
            raise ValueError(f"{_check_flag(args)}: the CLIP check compares each face with the median of the batch, which needs "
                             f"--n {MIN_BATCH} or more; got --n {args.n}")
    seed = evaluate.HELDOUT_SEED if args.seed is None else args.seed
    src = evaluate.source_faces(attribute, value, args.n, seed=seed, size=size)
    start = time.perf_counter()
    res, retry = _evaluate_edit(args, editor, src.images, (str(path), strength), keep)
    seconds = time.perf_counter() - start
    clip_loss = None
    if meta.get("source") and meta.get("target"):
        clip_loss = DirectionalCLIPLoss(prof.clip, meta["source"], meta["target"])
    metrics = evaluate.edit_metrics(src.images.to(res.edited.device), res.edited, attribute=attribute,
                                    target_value=value, oracle=toyworld.Oracle.load(device=prof.device),
                                    lpips=prof.lpips, clip_loss=clip_loss)
    report = {"direction": str(path), "strength": strength, "profile": prof.name, "attribute": attribute,
              "value": value, "first_seed": seed, "steps": steps, "t_edit": res.t_edit,
              "t_boost": res.t_boost, "edit_seconds": round(seconds, 2), **({"retry": retry} if retry else {}),
              **metrics}
    text = json.dumps(report, indent=1, default=float, ensure_ascii=False)  # "dark → medium" stays readable
    print(text)
    if args.output is not None:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text + "\n", encoding="utf-8")
        _log(f"wrote {args.output}")
    return 0


def _check_evaluate_args(args) -> None:
    if args.output is not None and Path(args.output).suffix.lower() != ".json":
        raise ValueError(f"--output: expected a .json file name, got {args.output!r}")
    if args.profile.strip() not in EVALUATE_PROFILES:
        raise ValueError(f"--profile: asyrp evaluate measures edits of toy faces with the toy world's oracle, which "
                         f"reads nothing else, so it needs --profile toy; got {args.profile!r}, a model of another "
                         f"world. To judge edits there, look at them: asyrp edit --compare GRID.png")
    if args.seed is not None and args.seed < 0:
        raise ValueError(f"--seed: expected a toy-world seed ≥ 0, got {args.seed}")


def _evaluate_edit(args, editor, images, direction: tuple, keep: dict):
    """``asyrp evaluate``'s edit: plain, or through the CLIP check (``--retry`` / ``--keep``); (the EditResult, what
    the check did or ``None``)."""
    import torch

    if args.retry is None:
        return editor.edit(images, [direction], generator=torch.Generator().manual_seed(0), reconstruct=False), None
    from ..beyond.retry import edit_checked

    checked = edit_checked(editor, images, [direction], factor=args.retry,
                           generator=torch.Generator().manual_seed(0), reconstruct=False, **keep)
    retry = {"factor": checked.factor, "share": checked.share, "retried": int(checked.retried.sum()),
             "median_gain": round(checked.median_gains[0], 4)}
    if keep:
        retry.update(keep=checked.kept, changed_first=int(checked.leaky.sum()),
                     edits_more=int(checked.extra.sum()), weak_kept=int(checked.final_weak.any(dim=1).sum()),
                     changed_kept=int((checked.final_changed > 0).sum()))
    return checked.result, retry


def _cmd_sample(args) -> int:
    import torch

    from ..core import ddim
    from .plotting import save_grid
    from ..models.profiles import load_profile

    out = Path(args.output)
    if out.suffix.lower() != ".png":
        raise ValueError(f"--output: expected a .png file name, got {args.output!r}")
    if not 0.0 <= args.eta <= 1.0:
        raise ValueError(f"--eta: expected a value in [0, 1], got {args.eta}")
    prof = load_profile(args.profile, device=args.device, clip=args.clip)
    print(prof, file=sys.stderr)
    steps = args.steps or prof.default_steps
    if steps > prof.schedule.num_train_timesteps:
        raise ValueError(f"--steps: expected at most {prof.schedule.num_train_timesteps}, got {steps}")
    g = torch.Generator().manual_seed(args.seed)
    x_T = torch.randn(args.n, 3, prof.image_size, prof.image_size, generator=g)
    start = time.perf_counter()
    x0 = ddim.sample(prof.unet, x_T, ddim.timesteps(steps, prof.schedule.num_train_timesteps), prof.schedule, eta=args.eta,
                     generator=torch.Generator().manual_seed(args.seed + 1))
    save_grid(x0, out, ncol=min(args.n, 8), scale=max(1, 128 // prof.image_size))
    print(f"wrote {out} ({args.n} samples, {steps} DDIM steps, η={args.eta}, "
          f"{time.perf_counter() - start:.1f} s)", file=sys.stderr)
    return 0


def _add_grade(sub) -> None:
    from ..course import grading

    p = sub.add_parser("grade", help="grade a folder of submitted course notebooks: a table student × exercise",
                       description=grading.DESCRIPTION, epilog=grading.EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    grading.add_arguments(p)
    p.set_defaults(func=_cmd_grade)


def _cmd_grade(args) -> int:
    from ..course import grading

    return grading.run(args)


#: The label a library error starts with (``"t_edit: expected …"``: the library's argument) → the flag a user of
#: the command line typed for it; a label is replaced only where the subcommand has that flag.
_LIBRARY_FLAGS = {
    "name": "--profile", "device": "--device", "clip": "--clip", "t_edit": "--t-edit", "t_boost": "--t-boost",
    "num_steps": "--steps", "n_steps": "--steps", "steps": "--steps", "points": "--points", "n": "--n",
    "source": "--source", "target": "--target", "output": "--output", "resume": "--resume", "images": "--images",
    "lr": "--lr", "lambda_l1": "--lambda-l1", "l1_spare": "--l1-spare", "l1_target": "--l1-target",
    "save_every_seconds": "--save-every", "epochs": "--epochs", "batch_size": "--batch-size",
    "n_images": "--n-images", "edit_lpips": "--edit-lpips", "boost_lpips": "--boost-lpips", "factor": "--retry",
    "precision": "--precision", "eta": "--eta", "seed": "--seed",
}
#: The LPIPS rule's curves (``intervals``' names) → (the curve in the paper's notation, the threshold's flag in
#: asyrp intervals, the timestep's flag in asyrp train).
_CURVES = {"lpips_x_pt": ("LPIPS(x, P_t)", "--edit-lpips", "--t-edit"),
           "lpips_x_xt": ("γ_t = LPIPS(x, x_t)", "--boost-lpips", "--t-boost")}


def _has_flag(args, flag: str) -> bool:
    return hasattr(args, flag[2:].replace("-", "_"))


def _flag_message(message: str, args) -> str:
    """A library error in the words of the command line: its leading label(s) (``"t_edit, t_boost: …"``)
    become the flags the user typed (``"--t-edit, --t-boost: …"``), and the LPIPS rule's "never reaches" says
    which flag to change."""
    head, sep, rest = message.partition(": ")
    if sep and head:
        flags = [_LIBRARY_FLAGS.get(name.strip()) for name in head.split(",")]
        if all(f is not None and _has_flag(args, f) for f in flags):
            message = f"{', '.join(flags)}: {rest}"
    message = message.replace("use device='cpu'", "use --device cpu")
    for name, (curve, threshold_flag, timestep_flag) in _CURVES.items():
        if message.startswith(f"{name} never reaches "):
            level, _, detail = message[len(f"{name} never reaches "):].partition(": ")
            detail = detail.split(". Use a lower threshold")[0]
            if _has_flag(args, threshold_flag):
                return (f"{threshold_flag}: {curve} never reaches the threshold {level} on these images ({detail}); "
                        f"give a lower {threshold_flag}")
            if _has_flag(args, timestep_flag):
                return (f"{timestep_flag}: the LPIPS rule finds no {timestep_flag[2:].replace('-', '_')}: {curve} "
                        f"never reaches the threshold {level} on these images ({detail}); give {timestep_flag} "
                        f"(asyrp intervals draws the curves)")
    return message


def _os_message(exc: OSError, args) -> str:
    """An OSError on the path given with --output (or a folder above it) names --output."""
    out = getattr(args, "output", None)
    if out and exc.filename is not None:
        f, o = Path(str(exc.filename)).expanduser().absolute(), Path(out).expanduser().absolute()
        if f == o or f.with_suffix("") == o or o in f.parents or f in o.parents:
            return f"--output: cannot write {out} ({exc.strerror or exc.__class__.__name__}: {exc.filename})"
    return str(exc)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, OSError) as exc:
        message = _os_message(exc, args) if isinstance(exc, OSError) else str(exc)
        print(f"asyrp {args.command}: error: {_flag_message(message, args)}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        from ..core.train import TrainingDiverged

        if not isinstance(exc, TrainingDiverged):
            raise
        print(f"asyrp {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"asyrp {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
