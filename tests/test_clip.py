"""Tests for asyrp_lib.models.clip: the CLIP wrapper and the directional loss (eq. 3), with a tiny random CLIP."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import CLIPImageProcessor

from _clip_fixtures import make_tiny_clip
from asyrp_lib.models.hub import HubUnavailableError
from asyrp_lib.models.clip import (CLIPEncoder, DirectionalCLIPLoss, directional_clip_loss,
                            directional_similarity)


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    return make_tiny_clip(tmp_path_factory.mktemp("tok"), image_size=224, patch_size=16)


@pytest.fixture(scope="module")
def encoder(tiny_clip):
    model, tokenizer = tiny_clip
    return CLIPEncoder(model, tokenizer).to("cpu")


def _unit(x):
    return F.normalize(x, dim=-1)


# ---------------------------------------------------------------------------------------------
# The directional loss on embeddings
# ---------------------------------------------------------------------------------------------

def test_directional_loss_matches_formula():
    g = torch.Generator().manual_seed(0)
    img_e, img_s = _unit(torch.randn(5, 16, generator=g)), _unit(torch.randn(5, 16, generator=g))
    t_t, t_s = _unit(torch.randn(16, generator=g)), _unit(torch.randn(16, generator=g))
    d_i, d_t = (img_e - img_s).numpy().astype(np.float64), (t_t - t_s).numpy().astype(np.float64)
    expected = 1 - d_i @ d_t / (np.linalg.norm(d_i, axis=1) * np.linalg.norm(d_t))
    for tt, ts in ((t_t, t_s), (t_t[None], t_s[None]), (t_t.expand(5, 16), t_s.expand(5, 16))):
        loss = directional_clip_loss(img_e, img_s, tt, ts)
        assert loss.shape == (5,)
        np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(directional_similarity(img_e, img_s, t_t, t_s).numpy(), 1 - expected,
                               rtol=1e-5, atol=1e-6)


def test_directional_loss_along_and_against_text():
    g = torch.Generator().manual_seed(1)
    t_s, t_t = _unit(torch.randn(16, generator=g)), _unit(torch.randn(16, generator=g))
    img_s = _unit(torch.randn(4, 16, generator=g))
    scale = torch.tensor([0.1, 0.5, 1.0, 3.0])[:, None]
    along = img_s + scale * (t_t - t_s)
    against = img_s - scale * (t_t - t_s)
    torch.testing.assert_close(directional_clip_loss(along, img_s, t_t, t_s), torch.zeros(4), atol=1e-6, rtol=0)
    torch.testing.assert_close(directional_clip_loss(against, img_s, t_t, t_s), torch.full((4,), 2.0),
                               atol=1e-6, rtol=0)


def test_directional_loss_bad_input():
    e = _unit(torch.randn(3, 16))
    t = _unit(torch.randn(16))
    with pytest.raises(ValueError, match="same embedding"):
        directional_clip_loss(e, e.flip(0), t, t.clone())
    with pytest.raises(ValueError, match="img_edit"):
        directional_clip_loss(e[0], e[0], t, -t)
    with pytest.raises(ValueError, match="D=8"):
        directional_clip_loss(e, e.flip(0), t[:8], -t[:8])


# ---------------------------------------------------------------------------------------------
# The encoder
# ---------------------------------------------------------------------------------------------

def test_encode_text_unit_vectors_and_errors(encoder):
    emb = encoder.encode_text(["a face", "a smiling face", "the face of a cat"])
    assert emb.shape == (3, 16)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(3))
    assert not torch.allclose(emb[0], emb[1])
    # batching with padding gives the same embedding as encoding alone
    torch.testing.assert_close(encoder.encode_text(["a face"])[0], emb[0], atol=1e-5, rtol=1e-5)
    for bad in (["a face", ""], ["   "], [], [3]):
        with pytest.raises(ValueError, match="texts"):
            encoder.encode_text(bad)


def test_encode_image_any_size_and_gradients(encoder):
    torch.manual_seed(0)
    for size in ((64, 64), (240, 320), (300, 200)):
        x = (torch.rand(2, 3, *size) * 2 - 1).requires_grad_(True)
        emb = encoder.encode_image(x)
        assert emb.shape == (2, 16)
        torch.testing.assert_close(emb.norm(dim=-1), torch.ones(2))
        emb[:, 0].sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in encoder.parameters())
    with pytest.raises(ValueError, match=r"images must be a tensor \(N, 3, H, W\)"):
        encoder.encode_image(torch.zeros(3, 64, 64))


def test_mismatched_end_token_is_rejected(tmp_path):
    model, tokenizer = make_tiny_clip(tmp_path, image_size=32, patch_size=8)
    model.config.text_config.eos_token_id = tokenizer.eos_token_id + 1000  # e.g. the default 49407 of a tiny vocab
    with pytest.raises(ValueError, match="eos_token_id"):
        CLIPEncoder(model, tokenizer)


def _smooth_image(h, w, seed):
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, max(h // 24, 2), max(w // 24, 2), generator=g)
    img = F.interpolate(low, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)
    return (img[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


@pytest.mark.parametrize("h, w", [(256, 256), (300, 400), (400, 280), (96, 96)])
def test_preprocessing_matches_clip_image_processor(tiny_clip, encoder, h, w):
    """The torch preprocessing matches transformers' CLIPImageProcessor (PIL resize, uint8 rounding).

    Measured on these smooth images (bicubic, the default): max |difference| ≤ 0.017 and mean ≤ 0.005 in
    normalised pixel units, i.e. about one uint8 step (1/255/0.27 ≈ 0.015); with ``interpolation="bilinear"``
    max ≤ 0.033, mean ≤ 0.006. The embeddings of the tiny model agree to cosine > 0.999.
    """
    model, _ = tiny_clip
    u8 = _smooth_image(h, w, seed=h + w)
    ref = CLIPImageProcessor()(images=u8, return_tensors="pt")["pixel_values"]  # the ViT-B/16 defaults
    x = torch.from_numpy(u8).permute(2, 0, 1)[None].float() / 127.5 - 1
    mine = encoder.preprocess(x)
    assert mine.shape == ref.shape == (1, 3, 224, 224)
    diff = (mine - ref).abs()
    assert diff.max() < 0.03 and diff.mean() < 0.008, (diff.max().item(), diff.mean().item())
    with torch.no_grad():
        ref_emb = _unit(encoder.encode_image(x))
        from asyrp_lib.models.clip import _features
        proc_emb = _unit(_features(model.get_image_features(pixel_values=ref)))
    assert F.cosine_similarity(ref_emb, proc_emb).item() > 0.999


def test_from_pretrained_local_folder(tiny_clip, tmp_path):
    model, tokenizer = tiny_clip
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    CLIPImageProcessor(crop_size={"height": 224, "width": 224}, image_mean=[0.5, 0.5, 0.5],
                       image_std=[0.5, 0.5, 0.5], resample=2).save_pretrained(tmp_path)
    enc = CLIPEncoder.from_pretrained(tmp_path, device="cpu")
    assert enc.image_size == 224 and enc.interpolation == "bilinear"
    torch.testing.assert_close(enc.mean.flatten(), torch.full((3,), 0.5))
    x = torch.rand(1, 3, 224, 224) * 2 - 1
    torch.testing.assert_close(enc.preprocess(x), x)  # mean = std = 0.5 maps [0, 1] back to [-1, 1]
    torch.testing.assert_close(enc.encode_text(["a face"]),
                               CLIPEncoder(model, tokenizer).encode_text(["a face"]))


def test_from_pretrained_offline_fails_fast(monkeypatch, tmp_path):
    import time

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(HubUnavailableError, match=r"(?s)asyrp-course-tests/no-such-clip.*toy"):
        CLIPEncoder.from_pretrained("asyrp-course-tests/no-such-clip")
    assert time.monotonic() - start < 10
    with pytest.raises(FileNotFoundError, match="name_or_path"):
        CLIPEncoder.from_pretrained(str(tmp_path / "missing" / "folder"))


# ---------------------------------------------------------------------------------------------
# The module holding a prompt pair
# ---------------------------------------------------------------------------------------------

def test_directional_module_matches_functional(encoder):
    loss_fn = DirectionalCLIPLoss(encoder, "face", "smiling face")
    torch.testing.assert_close(loss_fn.txt_source.norm(), torch.tensor(1.0))
    manual = _unit(encoder.encode_text([t.format("face") for t in loss_fn.templates]).mean(0))
    torch.testing.assert_close(loss_fn.txt_source, manual)
    torch.manual_seed(0)
    src = torch.rand(3, 3, 64, 64) * 2 - 1
    edit = (src + 0.2 * torch.randn_like(src)).clamp(-1, 1).requires_grad_(True)
    loss = loss_fn(edit, src)
    expected = directional_clip_loss(encoder.encode_image(edit), encoder.encode_image(src),
                                     loss_fn.txt_target, loss_fn.txt_source)
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(loss_fn.similarity(edit, src), 1 - expected)
    torch.testing.assert_close(loss_fn(edit, source_embeds=encoder.encode_image(src)), expected)
    with pytest.raises(ValueError, match="exactly one"):
        loss_fn(edit)
    loss.sum().backward()
    assert edit.grad is not None and edit.grad.abs().sum() > 0

    log_fn = DirectionalCLIPLoss(encoder, "face", "smiling face", form="log")
    torch.testing.assert_close(log_fn(edit, src), -torch.log((2 - expected) / 2))
    bare = DirectionalCLIPLoss(encoder, "face", "smiling face", templates=None)
    torch.testing.assert_close(bare.txt_target, encoder.encode_text(["smiling face"])[0])
    assert -1 <= loss_fn.text_cosine <= 1


@pytest.mark.parametrize("source, target", [("face", "face"), ("Face ", " face"), ("", "smiling face"),
                                            ("face", "  ")])
def test_identical_or_empty_prompts_rejected(encoder, source, target):
    with pytest.raises(ValueError, match="identical|empty"):
        DirectionalCLIPLoss(encoder, source, target)


def test_bad_templates_and_form(encoder):
    with pytest.raises(ValueError, match="templates"):
        DirectionalCLIPLoss(encoder, "face", "smiling face", templates=["a photo"])
    with pytest.raises(ValueError, match="form"):
        DirectionalCLIPLoss(encoder, "face", "smiling face", form="l2")


def test_encoder_follows_its_models_device(tmp_path):
    """An encoder wrapped around a model that already sits elsewhere (a GPU in practice; "meta" here) puts its
    normalisation buffers there too, so text and images are sent to the model's device, not the CPU."""
    model, tokenizer = make_tiny_clip(tmp_path, image_size=32, patch_size=16)
    enc = CLIPEncoder(model.to("meta"), tokenizer)
    assert enc.device == torch.device("meta") and enc.std.device == torch.device("meta")
