"""The celebahq recipe end to end, offline: the real U-Net architecture (celebahq_unet.json, 114 M parameters) with
random weights and the real scheduler config, a small random CLIP, at 64×64 (h: 512×2×2) and 2 DDIM steps.

The stand-ins come from scripts/make_celebahq_standin.py, which also lays them out as a hub cache so that the CLI
finds the celebahq profile's CLIP (openai/clip-vit-base-patch16) with the hub offline. Random weights sample
noise, not faces: these tests check the code path (loading, sampling, inversion, training, editing a folder in
chunks, refusals), not the quality of the results.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _scripts import load_script
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SIZE = 64


def _standin_module():
    return load_script("scripts/make_celebahq_standin.py")


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    """unet/ (celebahq architecture, random, sample_size 64, celebahq scheduler), clip/, hub/ (both, as a hub cache)."""
    return _standin_module().make_standin(tmp_path_factory.mktemp("celebahq"), sample_size=SIZE)


def test_standin_script_checks_its_arguments(tmp_path, capsys):
    assert _standin_module().main([str(tmp_path / "x"), "--sample-size", "48"]) == 2
    assert "--sample-size: expected a multiple of 32" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_standin_is_the_real_architecture_and_scheduler(standin):
    from asyrp_lib.models.profiles import CONFIG_DIR

    unet_cfg = json.loads((standin["unet"] / "config.json").read_text())
    real = json.loads((CONFIG_DIR / "celebahq_unet.json").read_text())
    assert {k: unet_cfg[k] for k in real if k != "sample_size"} == {k: v for k, v in real.items() if k != "sample_size"}
    sched = json.loads((standin["unet"] / "scheduler_config.json").read_text())
    assert sched["clip_sample"] is True and sched["beta_schedule"] == "linear"
    snap = next((standin["hub"] / "models--google--ddpm-ema-celebahq-256" / "snapshots").iterdir())
    assert (snap / "diffusion_pytorch_model.safetensors").resolve() == \
        (standin["unet"] / "diffusion_pytorch_model.safetensors").resolve()


@pytest.mark.slow
def test_load_sample_and_invert(standin):
    from asyrp_lib.core import ddim
    from asyrp_lib.models.profiles import load_profile

    prof = load_profile(str(standin["unet"]), device="cpu", clip=str(standin["clip"]))
    n_params = sum(p.numel() for p in prof.unet.parameters())
    assert 110e6 < n_params < 120e6 and not prof.is_toy
    assert prof.image_size == SIZE and prof.h_shape == (512, 2, 2)
    assert prof.schedule.clip_sample and prof.schedule.num_train_timesteps == 1000
    assert prof.clip.encode_text(["face", "smiling face"]).shape[0] == 2

    faces = prof.source_images(1, seed=0, steps=2, progress=False)  # sampled from the model, seeded
    assert faces.shape == (1, 3, SIZE, SIZE) and faces.min() >= -1 and faces.max() <= 1
    x_T = ddim.invert(prof.unet, faces, ddim.timesteps(2, 1000), prof.schedule, progress=False)
    assert x_T.shape == faces.shape and torch.isfinite(x_T).all()
    assert x_T.abs().max() > 1  # inversion never clips


def _run(*args, env):
    return subprocess.run([sys.executable, "-m", "asyrp_lib", *args], capture_output=True, text=True, env=env,
                          timeout=600)


@pytest.mark.slow
def test_cli_train_edit_folder_and_evaluate_refuses(standin, tmp_path):
    """``asyrp train`` and ``asyrp edit`` of a folder (in chunks) on the local celebahq stand-in; its CLIP is
    openai/clip-vit-base-patch16 found in the (stand-in) hub cache with the hub offline."""
    env = {**os.environ, "HF_HUB_CACHE": str(standin["hub"]), "HF_HUB_OFFLINE": "1",
           "ASYRP_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "2"}
    unet, out = str(standin["unet"]), tmp_path / "smiling"
    inputs = tmp_path / "photos"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (80, 60, 3), dtype=np.uint8)).save(inputs / "portrait.jpg")
    Image.fromarray(rng.integers(0, 256, (64, 64, 4), dtype=np.uint8), "RGBA").save(inputs / "b.png")
    r = _run("train", "--profile", unet, "--device", "cpu", "--source", "face", "--target", "smiling face",
             "--output", str(out), "--images", str(inputs / "b.png"), "--steps", "2", "--batch-size", "1",
             "--t-edit", "500", "--t-boost", "0", "--save-every", "0", env=env)
    assert r.returncode == 0, r.stderr
    meta = json.loads((out / "delta_net.json").read_text())
    assert meta["model_id"] == unet and meta["image_size"] == SIZE and meta["steps"] == 2
    assert "h 512×2×2" in r.stderr

    r = _run("edit", "--profile", unet, "--device", "cpu", "--direction", f"{out}:1.5", "--input", str(inputs),
             "--output", str(tmp_path / "edited"), "--batch-size", "1", env=env)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "edited").iterdir()) == ["b.png", "portrait.png"]
    assert all(Image.open(p).size == (SIZE, SIZE) for p in (tmp_path / "edited").iterdir())
    assert "2 chunk(s) of at most 1" in r.stderr and "centre-cropped" in r.stderr

    r = _run("evaluate", "--profile", unet, "--direction", str(out), "--attribute", "smile", "--value", "smiling",
             env=env)
    assert r.returncode == 2 and "--profile toy" in r.stderr and "oracle" in r.stderr
    assert "Traceback" not in r.stderr
