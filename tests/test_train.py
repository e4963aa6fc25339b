"""Tests for asyrp_lib.core.train: training f_t on the tiny profile (random U-Net and CLIP)."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from asyrp_lib.models import clip as clip_mod
from asyrp_lib.core import ddim
from asyrp_lib.core.delta_net import DeltaNet
from asyrp_lib.core.train import (STATE_NAME, TrainConfig, TrainingDiverged, find_intervals, train_direction)

# 4 DDIM steps (750, 500, 250, 0); t_edit = 500 → two training steps per batch
BASE = dict(n_steps=4, t_edit=500, t_boost=0, batch_size=2)


@pytest.fixture
def x0(images):
    return images[:2]


def weights(net):
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def by_t(history, key="loss"):
    out = {}
    for rec in history:
        out.setdefault(rec["t"], []).append(rec[key])
    return out


def test_training_reduces_the_directional_loss(tiny, x0, tmp_path):
    seen = []
    cfg = TrainConfig(**BASE, epochs=4, lambda_l1=0.0, trajectory="original")
    res = train_direction(tiny, cfg, tmp_path / "out", images=x0, progress=False, cache_dir=tmp_path / "cache",
                          callback=lambda s: seen.append((s.epoch, s.t, s.x_t)))
    assert res.steps == 8 and len(res.history) == 8
    curves = by_t(res.history, "clip")
    for t in (750, 500):
        # the same (t, images) every epoch (original trajectory, one batch): the loss falls epoch after epoch
        assert curves[t][-1] < curves[t][0] - 0.05, curves
    # "original" trajectory: the latents f_t sees do not depend on f_t
    x_500 = [x for e, t, x in seen if t == 500]
    assert all(torch.allclose(x_500[0].sum(0), x.sum(0), atol=1e-5) for x in x_500)
    meta = json.loads((tmp_path / "out" / "delta_net.json").read_text())
    assert meta["t_edit"] == 500 and meta["source"] == "face" and meta["steps"] == 4
    assert meta["training"]["steps_done"] == 8 and meta["model_id"] == tiny.model_id
    loaded = DeltaNet.load(tmp_path / "out", h_shape=tiny.h_shape, model_id=tiny.model_id)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), res.delta_net.state_dict().values()))


def test_interrupt_resume_matches_an_uninterrupted_run_and_reuses_inversions(tiny, x0, tmp_path, monkeypatch):
    cfg = dict(BASE, batch_size=1, epochs=2)  # 2 batches × 2 steps × 2 epochs = 8 steps, edited trajectory
    seen = {}
    full = train_direction(tiny, TrainConfig(**cfg), tmp_path / "full", images=x0, progress=False,
                           cache_dir=tmp_path / "cache", callback=lambda s: seen.setdefault(
                               (s.epoch, s.t, s.indices[0]), s.x_t))
    assert full.history[0]["l1"] == 0.0  # zero-initialised f_t: P_t^edit = P_t at the first step
    # "edited" trajectory: after training, f_t changes the latents it sees at t = 500
    assert not torch.allclose(seen[(0, 500, 0)], seen[(1, 500, 0)], atol=1e-4)

    calls = []
    real = ddim.invert
    monkeypatch.setattr(ddim, "invert", lambda *a, **k: calls.append(1) or real(*a, **k))
    at_3 = {}

    def stop_after_3(s):
        if s.step == 3:  # mid-epoch, mid-batch
            at_3.update(weights(s.net))
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_direction(tiny, TrainConfig(**cfg), tmp_path / "run", images=x0, progress=False,
                        cache_dir=tmp_path / "cache", callback=stop_after_3)
    assert calls == []  # the inversions came from the disk cache of the first run
    saved = DeltaNet.load(tmp_path / "run")
    assert saved.metadata["training"]["steps_done"] == 3
    assert all(torch.equal(saved.state_dict()[k], at_3[k]) for k in at_3)
    with pytest.raises(ValueError, match="already holds a trained direction"):
        train_direction(tiny, TrainConfig(**cfg), tmp_path / "run", images=x0, progress=False,
                        cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match="trained with target='smiling face'"):
        train_direction(tiny, TrainConfig(**cfg, target="sad face"), tmp_path / "run", resume=True,
                        progress=False, cache_dir=tmp_path / "cache")
    steps = []
    resumed = train_direction(tiny, TrainConfig(**cfg), tmp_path / "run", resume=True, progress=False,
                              cache_dir=tmp_path / "cache", callback=lambda s: steps.append(s.step))
    assert steps == [4, 5, 6, 7, 8] and resumed.steps == 8 and len(resumed.history) == 8
    assert [r["t"] for r in resumed.history] == [r["t"] for r in full.history]
    for k, v in full.delta_net.state_dict().items():
        assert torch.allclose(resumed.delta_net.state_dict()[k], v, atol=1e-5), k
    state = torch.load(tmp_path / "run" / STATE_NAME, weights_only=True)
    assert state["position"]["step"] == 8 and state["position"]["epoch"] == 2


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny, x0, tmp_path, monkeypatch):
    real = clip_mod.DirectionalCLIPLoss.similarity
    count = {"n": 0}

    def flaky(self, *a, **k):
        count["n"] += 1
        out = real(self, *a, **k)
        return out * float("nan") if count["n"] == 4 else out

    monkeypatch.setattr(clip_mod.DirectionalCLIPLoss, "similarity", flaky)
    after_epoch_1 = {}
    with pytest.raises(TrainingDiverged, match=r"loss became nan at step 4 \(epoch 2, t = 500.*last good checkpoint"):
        train_direction(tiny, TrainConfig(**BASE, epochs=3), tmp_path / "out", images=x0, progress=False,
                        cache_dir=tmp_path / "cache",
                        callback=lambda s: after_epoch_1.update(weights(s.net)) if s.step == 2 else None)
    kept = DeltaNet.load(tmp_path / "out")
    assert kept.metadata["training"]["steps_done"] == 2
    assert all(torch.equal(kept.state_dict()[k], v) for k, v in after_epoch_1.items())


def test_intervals_from_the_curves_cached_and_images_from_a_folder(tiny, x0, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, img in enumerate(x0):
        arr = ((img.permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)
        Image.fromarray(arr).save(folder / f"{i}.png")
    kw = dict(edit_lpips=0.1, boost_lpips=0.05, points=5, cache_dir=tmp_path / "iv", progress=False)
    first = find_intervals(tiny, x0, "face", "smiling face", **kw)
    assert not first.cached and first.timesteps == [0, 200, 400, 600, 800]
    assert 0 <= first.t_boost <= first.t_edit <= 800
    assert first.edit_threshold == pytest.approx(0.1 * first.text_cosine)
    again = find_intervals(tiny, x0, "face", "smiling face", **kw)
    assert again.cached and (again.t_edit, again.t_boost) == (first.t_edit, first.t_boost)
    assert again.lpips_x_pt == first.lpips_x_pt
    from asyrp_lib.core.intervals import IntervalSettings
    grouped = find_intervals(tiny, x0, "face", "smiling face", settings=IntervalSettings(0.1, 0.05, points=5),
                             cache_dir=tmp_path / "iv", progress=False)
    assert grouped.cached and grouped.lpips_x_pt == first.lpips_x_pt  # the same settings, the same cache entry
    with pytest.raises(TypeError, match="unexpected keyword.*point"):
        find_intervals(tiny, x0, point=5)
    # train without t_edit / t_boost: they come from the same (cached) intervals on the same images
    cfg = TrainConfig(n_steps=2, epochs=1, edit_lpips=0.1, boost_lpips=0.05, interval_points=5)
    res = train_direction(tiny, cfg, tmp_path / "out", images=folder, progress=False, cache_dir=tmp_path)
    # the PNG round trip rounds the images, so the intervals are computed anew (cached under another key)
    assert res.t_edit <= 500 and res.t_boost <= res.t_edit
    assert DeltaNet.read_metadata(tmp_path / "out")["t_edit"] == res.t_edit


def test_bad_configurations(tiny, x0, tmp_path):
    for kw, msg in [(dict(target="Face"), "identical"), (dict(source=" "), "source"),
                    (dict(lr=float("inf")), "lr"), (dict(trajectory="both"), "trajectory"),
                    (dict(epochs=0), "epochs"), (dict(clip_loss_form="l2"), "clip_loss_form"),
                    (dict(t_edit=1000), r"t_edit: expected an integer timestep in \[0, 999\]"),
                    (dict(precision="fp16"), "^precision: expected"),
                    (dict(channels_last="no"), "^channels_last: expected"),
                    (dict(compile="fast"), "^compile: expected")]:
        with pytest.raises(ValueError, match=msg):
            train_direction(tiny, TrainConfig(**{**BASE, **kw}), tmp_path / "o", images=x0, progress=False,
                            cache_dir=tmp_path / "c")
    with pytest.raises(ValueError, match="32×32"):
        train_direction(tiny, TrainConfig(**BASE), tmp_path / "o", images=torch.zeros(1, 3, 16, 16),
                        progress=False, cache_dir=tmp_path / "c")


@pytest.mark.slow
def test_celebahq_architecture_trains_and_edits_at_64px(tmp_path):
    """The Colab path without the hub: the real celebahq U-Net config with random weights, a tiny random CLIP,
    one training step and one edit at 64×64 (h: 512×2×2)."""
    import sys as _sys
    from pathlib import Path

    from diffusers import UNet2DModel

    from asyrp_lib.core.pipeline import AsyrpEditor
    from asyrp_lib.models.profiles import CONFIG_DIR, load_profile

    _sys.path.insert(0, str(Path(__file__).parent))
    from _clip_fixtures import make_tiny_clip

    torch.manual_seed(0)
    UNet2DModel.from_config(json.loads((CONFIG_DIR / "celebahq_unet.json").read_text())).save_pretrained(
        tmp_path / "unet")
    model, tokenizer = make_tiny_clip(tmp_path / "clip", image_size=32, patch_size=8)
    model.save_pretrained(tmp_path / "clip")
    tokenizer.save_pretrained(tmp_path / "clip")
    prof = load_profile(str(tmp_path / "unet"), device="cpu", clip=str(tmp_path / "clip"))
    g = torch.Generator().manual_seed(0)
    x0 = torch.nn.functional.interpolate(torch.randn(1, 3, 8, 8, generator=g), size=64, mode="bilinear").tanh()
    cfg = TrainConfig(n_steps=2, t_edit=500, t_boost=0, image_size=64, epochs=1, batch_size=1)
    res = train_direction(prof, cfg, tmp_path / "dir", images=x0, progress=False, cache_dir=tmp_path / "cache")
    assert res.steps == 1 and res.delta_net.h_shape == (512, 2, 2)
    assert np.isfinite(res.history[0]["loss"])
    assert any(p.abs().sum() > 0 for p in res.delta_net.conv_out.parameters())  # the step moved f_t

    editor = AsyrpEditor(prof, n_steps=2, image_size=64, progress=False)
    out = editor.edit(x0, [(tmp_path / "dir", 1.0)])
    assert out.edited.shape == (1, 3, 64, 64) and torch.isfinite(out.edited).all()
    assert (out.edited - out.reconstruction).abs().max() > 0
    with pytest.raises(ValueError, match="512×2×2.*h has shape 512×8×8"):
        AsyrpEditor(prof, n_steps=2, progress=False).edit(torch.zeros(1, 3, 256, 256), [(tmp_path / "dir", 1.0)])


class Killed(Exception):
    """Stands for a lost process: unlike KeyboardInterrupt, nothing is saved on the way out."""


def test_a_kill_between_two_saves_resumes_exactly_from_the_last_in_epoch_checkpoint(tiny, x0, tmp_path):
    cfg = dict(BASE, batch_size=1, epochs=2, save_every_steps=3, save_every_seconds=0)  # 4 steps per epoch
    full = train_direction(tiny, TrainConfig(**cfg), tmp_path / "full", images=x0, progress=False,
                           cache_dir=tmp_path / "cache")

    def kill_at_4(s):  # after step 4's update, before the end-of-epoch save: the last save was step 3's
        if s.step == 4:
            raise Killed

    with pytest.raises(Killed):
        train_direction(tiny, TrainConfig(**cfg), tmp_path / "run", images=x0, progress=False,
                        cache_dir=tmp_path / "cache", callback=kill_at_4)
    state = torch.load(tmp_path / "run" / STATE_NAME, weights_only=True)
    assert state["position"]["step"] == 3 and state["position"]["epoch"] == 0  # the in-epoch save
    assert state["position"]["t_index"] == 1 and state["latent"] is not None  # in the middle of a batch
    steps = []
    resumed = train_direction(tiny, TrainConfig(**cfg), tmp_path / "run", resume=True, progress=False,
                              cache_dir=tmp_path / "cache", callback=lambda s: steps.append(s.step))
    assert steps == [4, 5, 6, 7, 8] and resumed.steps == 8
    for k, v in full.delta_net.state_dict().items():
        torch.testing.assert_close(resumed.delta_net.state_dict()[k], v, atol=1e-6, rtol=1e-5)
    assert [r["loss"] for r in resumed.history] == pytest.approx([r["loss"] for r in full.history], rel=1e-4)


def test_the_caller_config_is_not_changed(tiny, x0, tmp_path):
    cfg = TrainConfig(n_steps=2, epochs=1, edit_lpips=0.1, boost_lpips=0.05, interval_points=5)
    before = dict(vars(cfg))
    res = train_direction(tiny, cfg, tmp_path / "out", images=x0, progress=False, cache_dir=tmp_path)
    assert vars(cfg) == before and cfg.t_edit is None and res.t_edit is not None


def test_bf16_training_is_close_to_fp32_and_keeps_f_t_in_fp32(tiny, x0, tmp_path):
    """precision="bf16": the U-Net under bfloat16 autocast, f_t, its gradients and the loss in float32;
    inversions cached apart from the fp32 ones; speed options are the caller's when resuming."""
    cfg = dict(BASE, epochs=1, trajectory="original")
    fp32 = train_direction(tiny, TrainConfig(**cfg), tmp_path / "fp32", images=x0, progress=False,
                           cache_dir=tmp_path / "cache")
    bf16 = train_direction(tiny, TrainConfig(**cfg, precision="bf16"), tmp_path / "bf16", images=x0,
                           progress=False, cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache" / "inversions").glob("*.safetensors"))) == 4  # 2 images × 2 precisions
    assert all(p.dtype == torch.float32 for p in bf16.delta_net.parameters())
    for a, b in zip(fp32.history, bf16.history):
        # measured on this tiny random model: the losses (≈ 1.2-1.4) differ by about 0.015
        assert abs(a["loss"] - b["loss"]) < 0.05, (a, b)
    assert DeltaNet.load(tmp_path / "bf16").metadata["training"]["precision"] == "bf16"
    more = train_direction(tiny, TrainConfig(**dict(cfg, epochs=2)), tmp_path / "bf16", resume=True,
                           images=x0, progress=False, cache_dir=tmp_path / "cache")
    assert DeltaNet.load(tmp_path / "bf16").metadata["training"]["precision"] == "fp32" and more.steps == 4


def test_the_loss_settings_are_one_object_and_the_old_keywords_still_work():
    from dataclasses import fields, replace

    from asyrp_lib.core.loss import AsyrpLoss, LossSettings

    assert {f.name for f in fields(LossSettings)} == {f.name for f in fields(AsyrpLoss)}
    old = TrainConfig(lambda_l1=1.5, l1_spare=0.2, clip_loss_form="cosine")
    new = TrainConfig(loss_settings=LossSettings(lambda_l1=1.5, l1_spare=0.2, clip_form="cosine"))
    assert old == new and old.lambda_l1 == 1.5 and old.clip_loss_form == "cosine" and old.l1_target is None
    assert replace(old, epochs=2).loss_settings == old.loss_settings and replace(old, lambda_l1=0.0).lambda_l1 == 0.0
    flat = old.to_dict()  # the saved form: the loss's fields flat, as before
    assert flat["lambda_l1"] == 1.5 and flat["clip_loss_form"] == "cosine" and "loss_settings" not in flat
    assert TrainConfig.from_dict(flat) == old
    assert TrainConfig.from_dict({"epochs": 1, "loss_settings": {"lambda_l1": 1.5, "l1_spare": 0.2,
                                                                 "clip_form": "cosine"}}) == old
    resolved = TrainConfig(lambda_l1=0.5, lr=0.01, t_edit=300, l1_spare=0.0, l1_target="unedited")
    assert resolved.validate().loss == AsyrpLoss(lambda_l1=0.5, l1_target="unedited")
