"""Random-weight stand-ins for the ``celebahq`` profile's models, to check its code path offline.

The ``celebahq`` profile loads ``google/ddpm-ema-celebahq-256`` (a diffusers ``UNet2DModel``, 114 M
parameters) and ``openai/clip-vit-base-patch16`` from the model hub, which CI and offline machines cannot
reach. This script writes models of the same kinds with random weights:

    OUT/unet/   the real U-Net architecture (asyrp_lib/configs/celebahq_unet.json) with random weights,
                and the real noise scheduler (asyrp_lib/configs/celebahq_scheduler.json, clip_sample: true)
                as scheduler_config.json;
    OUT/clip/   a small random CLIPModel with a real BPE tokenizer and ViT-B/16's preprocessor config
                (224×224 input, OpenAI mean/std);
    OUT/hub/    (unless --no-hub-cache) a Hugging Face hub cache holding both under their hub ids, linked
                to the folders above, so that the unchanged ``celebahq`` profile loads them offline.

Use them either as folders, or as the hub models themselves:

    load_profile("OUT/unet", clip="OUT/clip")                          # a local-folder profile
    HF_HUB_CACHE=OUT/hub HF_HUB_OFFLINE=1 ASYRP_PROFILE=celebahq ...   # the celebahq profile, offline

``--sample-size`` only changes ``sample_size`` in the U-Net's config.json (the size a local-folder profile
edits at; the network is fully convolutional and accepts any multiple of 32): 64 makes CPU checks fast,
with h of shape 512×2×2 instead of 512×8×8. The ``celebahq`` profile itself always works at 256×256.
Random weights sample noise, not faces: the stand-ins check code paths, shapes and errors, not results.

    python scripts/make_celebahq_standin.py OUT [--sample-size 64] [--seed 0] [--no-hub-cache]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

UNET_ID = "google/ddpm-ema-celebahq-256"
CLIP_ID = "openai/clip-vit-base-patch16"
#: Words the stand-in tokenizer knows as whole tokens (every other word is spelled out in bytes).
WORDS = ("a", "the", "of", "with", "photo", "face", "smiling", "glasses", "person", "young", "angry")
#: The commit name used for the stand-ins in the hub cache (any 40 hex digits do).
STANDIN_REVISION = "0" * 39 + "1"


def _config(name: str) -> dict:
    from asyrp_lib.models.profiles import CONFIG_DIR

    return json.loads((CONFIG_DIR / name).read_text())


def check_sample_size(sample_size: int) -> int:
    if isinstance(sample_size, bool) or not isinstance(sample_size, int) or sample_size < 32 or sample_size % 32:
        raise ValueError(f"--sample-size: expected a multiple of 32 (the U-Net halves the image five times), "
                         f"got {sample_size}")
    return sample_size


def write_unet(folder, *, sample_size: int = 256, seed: int = 0) -> Path:
    """The celebahq U-Net architecture with random weights and the celebahq scheduler config in ``folder``."""
    import torch
    from diffusers import DDPMScheduler, UNet2DModel

    check_sample_size(sample_size)
    folder = Path(folder)
    torch.manual_seed(seed)
    unet = UNet2DModel.from_config({**_config("celebahq_unet.json"), "sample_size": sample_size})
    unet.save_pretrained(folder)
    DDPMScheduler.from_config(_config("celebahq_scheduler.json")).save_pretrained(folder)
    return folder


def write_clip(folder, *, seed: int = 0, image_size: int = 224, patch_size: int = 16) -> Path:
    """A small random CLIP (ViT vision tower at ``image_size``/``patch_size``), its tokenizer and ViT-B/16's
    preprocessor config in ``folder``."""
    from asyrp_lib.models.clip import random_clip

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model, tokenizer = random_clip(image_size=image_size, patch_size=patch_size, words=WORDS, seed=seed,
                                   folder=folder)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    pre = _config("clip_vit_b16_preprocessor.json")
    pre.update(crop_size={"height": image_size, "width": image_size}, size={"shortest_edge": image_size})
    (folder / "preprocessor_config.json").write_text(json.dumps(pre, indent=2) + "\n")
    return folder


def link_into_hub_cache(hub: Path, repo_id: str, folder: Path) -> Path:
    """Make ``folder``'s files the cached snapshot of ``repo_id`` in the hub cache ``hub`` (symbolic links,
    copies where links are not allowed), as ``huggingface_hub`` lays them out."""
    import shutil

    repo = Path(hub) / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / STANDIN_REVISION
    if snap.exists():
        shutil.rmtree(snap)
    snap.mkdir(parents=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(STANDIN_REVISION)
    for f in sorted(Path(folder).iterdir()):
        if f.is_file():
            try:
                os.symlink(f.resolve(), snap / f.name)
            except OSError:
                shutil.copy2(f, snap / f.name)
    return snap


def make_standin(out, *, sample_size: int = 256, seed: int = 0, hub_cache: bool = True) -> dict[str, Path]:
    """Write ``out/unet``, ``out/clip`` and (``hub_cache``) ``out/hub``; returns their paths by name."""
    out = Path(out)
    check_sample_size(sample_size)
    paths = {"unet": write_unet(out / "unet", sample_size=sample_size, seed=seed),
             "clip": write_clip(out / "clip", seed=seed)}
    if hub_cache:
        paths["hub"] = out / "hub"
        link_into_hub_cache(paths["hub"], UNET_ID, paths["unet"])
        link_into_hub_cache(paths["hub"], CLIP_ID, paths["clip"])
    return paths


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="folder to write (unet/, clip/, hub/)")
    p.add_argument("--sample-size", type=int, default=256,
                   help="sample_size in the U-Net's config.json (a multiple of 32; default 256, the real one)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-hub-cache", action="store_true", help="do not write out/hub")
    args = p.parse_args(argv)
    start = time.perf_counter()
    try:
        paths = make_standin(args.out, sample_size=args.sample_size, seed=args.seed,
                             hub_cache=not args.no_hub_cache)
    except ValueError as exc:
        print(f"make_celebahq_standin: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote random-weight stand-ins in {time.perf_counter() - start:.1f} s:")
    print(f"  U-Net ({UNET_ID} architecture, sample_size {args.sample_size}) + scheduler: {paths['unet']}")
    print(f"  CLIP (small, random; tokenizer and preprocessing of {CLIP_ID}): {paths['clip']}")
    print(f"use: load_profile({str(paths['unet'])!r}, clip={str(paths['clip'])!r})")
    if "hub" in paths:
        print(f"or:  HF_HUB_CACHE={paths['hub']} HF_HUB_OFFLINE=1 ASYRP_PROFILE=celebahq  (the celebahq profile, "
              f"offline, at 256×256)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
