"""Profile loading: tiny in seconds, celebahq from local folders, clear and fast errors offline."""
import json
import time

import pytest
import torch
from diffusers import DDPMScheduler, UNet2DModel

from asyrp_lib.models import profiles
from asyrp_lib.models.profiles import CONFIG_DIR, HubUnavailableError, load_profile


def test_tiny_profile(tiny):
    assert tiny.name == "tiny" and tiny.image_size == 32
    assert isinstance(tiny.unet, UNet2DModel) and not tiny.unet.training
    assert tiny.h_shape == (32, 16, 16)
    assert tiny.schedule.num_train_timesteps == 1000
    assert tiny.prompt_pairs and all(len(p) == 2 for p in tiny.prompt_pairs)
    assert "tiny" in str(tiny)


def test_tiny_profile_is_the_same_model_every_time(tiny):
    again = load_profile("tiny")
    for a, b in zip(tiny.unet.parameters(), again.unet.parameters()):
        assert torch.equal(a, b)


def test_unknown_names_are_value_errors():
    for bad in ["nope", "", "   ", "a/b/c"]:
        with pytest.raises(ValueError, match="name"):
            load_profile(bad)
    with pytest.raises(ValueError, match="device"):
        load_profile("tiny", device="tpu-9")


def test_default_profile_name(monkeypatch):
    monkeypatch.setenv("ASYRP_PROFILE", "tiny")
    assert profiles.default_profile_name() == "tiny"
    monkeypatch.delenv("ASYRP_PROFILE")
    expected = "celebahq" if torch.cuda.is_available() else "toy"
    assert profiles.default_profile_name() == expected


@pytest.mark.parametrize("how", ["HF_HUB_OFFLINE", "unreachable endpoint"])
def test_celebahq_offline_fails_fast_with_a_useful_message(monkeypatch, tmp_path, how):
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache
    if how == "HF_HUB_OFFLINE":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    start = time.monotonic()
    with pytest.raises(HubUnavailableError) as info:
        load_profile("celebahq")
    assert time.monotonic() - start < 15
    msg = str(info.value)
    assert "google/ddpm-ema-celebahq-256" in msg and "toy" in msg and "folder" in msg


def test_missing_toy_weights_say_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("ASYRP_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="toy_ddpm"):
        load_profile("toy")


def test_a_unet_without_mid_block_is_refused(tmp_path):
    cfg = json.loads((CONFIG_DIR / "tiny_unet.json").read_text())
    UNet2DModel.from_config({**cfg, "mid_block_type": None}).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="mid block"):
        load_profile(str(tmp_path))


@pytest.mark.slow
def test_celebahq_architecture_round_trips_through_a_local_folder(tmp_path):
    """The full-size code path offline: the real configs, random weights, save_pretrained → load_profile."""
    torch.manual_seed(0)
    unet = UNet2DModel.from_config(json.loads((CONFIG_DIR / "celebahq_unet.json").read_text()))
    unet.save_pretrained(tmp_path)
    DDPMScheduler.from_config(json.loads((CONFIG_DIR / "celebahq_scheduler.json").read_text())).save_pretrained(tmp_path)
    prof = load_profile(str(tmp_path), device="cpu")
    assert prof.image_size == 256 and prof.h_shape == (512, 8, 8)
    assert torch.equal(prof.schedule.alphas_cumprod, DDPMScheduler(beta_schedule="linear").alphas_cumprod)
    first = next(prof.unet.parameters())
    assert torch.equal(first, next(unet.parameters()))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(prof.hspace.eps(x, 500), unet(x, 500).sample, rtol=1e-5, atol=1e-5)


def _write_full_size_clip(folder):
    """The real ViT-B/16 CLIP config and preprocessor with random weights, and a tokenizer with CLIP's ids.

    The tokenizer knows only single characters, but its special tokens sit at CLIP's ids (49406, 49407),
    so the real text config's end-of-text id is right for it.
    """
    import shutil

    from transformers import CLIPConfig, CLIPModel
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    config = CLIPConfig.from_pretrained(CONFIG_DIR / "clip_vit_b16.json")
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(folder)
    shutil.copy(CONFIG_DIR / "clip_vit_b16_preprocessor.json", folder / "preprocessor_config.json")
    chars = list(bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars]
    tokens += [f"<|unused{i}|>" for i in range(49406 - len(tokens))] + ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return config


@pytest.mark.slow
def test_celebahq_clip_config_round_trips_through_a_local_folder(tmp_path, tiny):
    """The real CLIP config (ViT-B/16, 224², OpenAI mean/std) loads from a folder as a profile's CLIP."""
    clip_dir = tmp_path / "clip"
    config = _write_full_size_clip(clip_dir)
    unet_dir = tmp_path / "unet"
    tiny.unet.save_pretrained(unet_dir)
    prof = load_profile(str(unet_dir), clip=str(clip_dir))
    enc = prof.clip
    assert enc.image_size == 224 and enc.embed_dim == config.projection_dim == 512
    torch.testing.assert_close(enc.mean.flatten().cpu(), torch.tensor([0.48145466, 0.4578275, 0.40821073]))
    img = torch.rand(2, 3, 256, 256, requires_grad=True) * 2 - 1
    emb = enc.encode_image(img)
    assert emb.shape == (2, 512) and torch.allclose(emb.norm(dim=-1), torch.ones(2), atol=1e-5)
    txt = enc.encode_text(["face", "smiling face"])
    assert txt.shape == (2, 512) and not torch.allclose(txt[0], txt[1])


def test_asyrp_clip_replaces_the_clip_when_none_is_given(monkeypatch, tmp_path):
    from asyrp_lib.models.clip import random_clip

    model, tokenizer = random_clip(image_size=48, patch_size=16, seed=3, folder=tmp_path)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    monkeypatch.setenv("ASYRP_CLIP", str(tmp_path))
    assert load_profile("tiny", device="cpu").clip.model.config.vision_config.image_size == 48
    assert profiles.load_clip("tiny", device="cpu").model.config.vision_config.image_size == 48
    explicit = load_profile("tiny", device="cpu", clip="random")  # an explicit clip wins over the variable
    assert explicit.clip.model.config.vision_config.image_size == 32
    monkeypatch.setenv("ASYRP_CLIP", "  ")  # blank: the profile's own CLIP
    assert load_profile("tiny", device="cpu").clip.model.config.vision_config.image_size == 32


def test_asyrp_steps_overrides_the_default_steps(monkeypatch):
    monkeypatch.setenv("ASYRP_STEPS", "4")
    assert load_profile("tiny", device="cpu").default_steps == 4
    monkeypatch.setenv("ASYRP_STEPS", "")
    assert load_profile("tiny", device="cpu").default_steps == profiles.PROFILES["tiny"].default_steps
    for bad in ["0", "-3", "four", "2.5"]:
        monkeypatch.setenv("ASYRP_STEPS", bad)
        with pytest.raises(ValueError, match="ASYRP_STEPS.*positive"):
            load_profile("tiny", device="cpu")
