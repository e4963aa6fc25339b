"""The toy face world: renderer, captions, dataset, and the shipped oracle and toy CLIP."""
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from asyrp_lib.toy import toyworld as tw

HELD_OUT_SEED = 31_337  # used neither by the training scripts nor by their evaluations


def test_sample_attributes_deterministic_and_covering():
    a, b = tw.sample_attributes(300, seed=1), tw.sample_attributes(300, seed=1)
    assert a == b
    assert a != tw.sample_attributes(300, seed=2)
    for k, values in tw.ATTRIBUTES.items():
        if k == "smile":
            assert all(values[0] <= x["smile"] <= values[1] for x in a)
        else:
            assert {x[k] for x in a} == set(values), k
    labels = [tw.smile_label(x["smile"]) for x in a]
    for lab in tw.SMILE_LABELS:
        assert labels.count(lab) > 60, lab
    # the sampled smiles keep clear of the label thresholds
    assert min(abs(abs(x["smile"]) - tw.SMILE_THRESHOLD) for x in a) > 0.1


def test_render_shape_range_determinism():
    attrs = tw.sample_attributes(20, seed=3)
    x = tw.render(attrs)
    assert x.shape == (20, 3, 64, 64) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    assert torch.equal(x, tw.render(attrs))
    assert torch.equal(x[5:6], tw.render(attrs[5]))
    assert tw.render(attrs[:2], size=32).shape == (2, 3, 32, 32)


def test_render_is_antialiased():
    """A 64-pixel render is close to a 256-pixel render box-filtered down, and has soft edges."""
    attrs = tw.sample_attributes(8, seed=4)
    small, big = tw.render(attrs, 64), tw.render(attrs, 256)
    assert (small - F.avg_pool2d(big, 4)).abs().mean() < 0.02
    bg = torch.tensor([tw.BACKGROUND_RGB[a["background"]] for a in attrs]).view(8, 3, 1) * 2 - 1
    row = small[:, :, 32]  # a row through the head: background, an edge, skin
    assert ((row - bg).abs().amax(1) > 0.05).any()


def test_render_follows_the_attributes():
    base = tw.sample_attributes(1, seed=5)[0]
    base.update(glasses="no", hair="none", smile=0.0, eyes="open")
    x0 = tw.render(base)[0]
    corner = x0[:, 1, 1]
    assert torch.allclose(corner, torch.tensor(tw.BACKGROUND_RGB[base["background"]]) * 2 - 1, atol=1e-5)
    smiling, frowning = tw.render(dict(base, smile=1.0))[0], tw.render(dict(base, smile=-1.0))[0]
    assert torch.equal(smiling[:, :32], frowning[:, :32])  # the mouth is in the lower half
    assert (smiling - frowning).abs().sum() > 20
    with_glasses = tw.render(dict(base, glasses="yes"))[0]
    assert torch.equal(with_glasses[:, 44:], x0[:, 44:]) and (with_glasses - x0).abs().sum() > 20
    for hair in ("short", "long"):
        assert (tw.render(dict(base, hair=hair))[0] - x0)[:, :24].abs().sum() > 20
    long_minus_short = tw.render(dict(base, hair="long"))[0] - tw.render(dict(base, hair="short"))[0]
    assert long_minus_short[:, 32:].abs().sum() > 20  # long hair reaches below the eyes
    assert (tw.render(dict(base, eyes="closed"))[0] - x0).abs().sum() > 10
    with pytest.raises(ValueError, match="glasses"):
        tw.render(dict(base, glasses="maybe"))


_WORDS = {"smiling": {"smiling", "happy", "grinning", "cheerful", "smile"},
          "frowning": {"frowning", "sad", "unhappy", "grumpy", "frown"},
          "neutral": {"neutral", "serious", "expressionless", "calm", "straight"}}


def test_captions_describe_the_face():
    attrs = tw.sample_attributes(400, seed=7)
    caps = [tw.caption(a, random.Random(i)) for i, a in enumerate(attrs)]
    assert caps == [tw.caption(a, random.Random(i)) for i, a in enumerate(attrs)]
    assert len(set(caps)) > 250
    vocab = set(tw.caption_vocabulary())
    mentioned = {"smile": 0, "hair": 0, "glasses": 0}
    for a, c in zip(attrs, caps):
        words = set(re.findall(r"[a-z]+", c))
        assert words <= vocab, c
        for lab, ws in _WORDS.items():
            if words & ws:
                assert lab == tw.smile_label(a["smile"]), (a["smile"], c)
                mentioned["smile"] += 1
        for colour in tw.ATTRIBUTES["hair_color"]:
            if f"{colour} hair" in c:
                assert a["hair"] != "none" and a["hair_color"] == colour, c
                mentioned["hair"] += 1
        for colour in tw.ATTRIBUTES["background"]:
            if f"{colour} background" in c:
                assert a["background"] == colour, c
        if "bald" in words or "no hair" in c or "without hair" in c:
            assert a["hair"] == "none", c
        for length in ("short", "long"):
            if f"{length} hair" in c or re.search(f"{length} [a-z]+ hair", c):
                assert a["hair"] == length, c
        if "glasses" in words or "spectacles" in words:
            negated = "without glasses" in c or "no glasses" in c
            assert negated == (a["glasses"] == "no"), c
            mentioned["glasses"] += 1
        if "eyes" in words:
            assert a["eyes"] in words, c
        if "skin" in words:
            assert f"{a['skin']} skin" in c, c
    assert mentioned["smile"] > 200 and mentioned["hair"] > 80 and mentioned["glasses"] > 100
    assert any(len(c.split()) <= 3 for c in caps)  # partial descriptions occur


def test_dataset_items():
    ds = tw.ToyFaces(6, seed=8)
    assert len(ds) == 6
    item = ds[2]
    assert torch.equal(item["image"], tw.render(ds.attrs[2])[0])
    assert isinstance(item["caption"], str) and item["caption"] == ds[2]["caption"]
    batch = next(iter(torch.utils.data.DataLoader(tw.ToyFaces(4, seed=8, with_captions=False), batch_size=4)))
    assert batch["image"].shape == (4, 3, 64, 64) and "caption" not in batch


def test_gaussian_blur():
    x = tw.render(tw.sample_attributes(2, seed=9))
    assert torch.allclose(tw.gaussian_blur(x, 1e-4), x, atol=1e-6)
    same = x[:1].expand(2, -1, -1, -1)
    y = tw.gaussian_blur(same, torch.tensor([1.0, 4.0]))
    assert torch.allclose(y.mean((1, 2, 3)), same.mean((1, 2, 3)), atol=0.02)

    def roughness(z):
        return (z.diff(dim=-1).abs().mean() + z.diff(dim=-2).abs().mean()).item()
    assert roughness(y[1]) < roughness(y[0]) < roughness(x[0])


# ----------------------------------------------------------------------------------------------
# the shipped oracle

_IMPORT_CHECKS = {  # what must hold right after importing each module first
    "asyrp_lib.toy.oracle": "assert 'asyrp_lib.toy.toyworld' not in sys.modules, 'oracle imports toyworld'",
    "asyrp_lib.toy.toyworld": "assert not {'diffusers', 'transformers'} & set(sys.modules), 'toyworld is slow to import'",
}


@pytest.mark.parametrize("first", sorted(_IMPORT_CHECKS))
def test_toyworld_and_oracle_import_without_a_cycle(first):
    """Either module imports first in a fresh interpreter; ``toyworld.Oracle`` is the oracle's own class."""
    code = "\n".join([
        "import importlib, sys",
        f"importlib.import_module({first!r})",
        _IMPORT_CHECKS[first],
        "from asyrp_lib.toy import oracle, toyworld",
        "assert toyworld.Oracle is oracle.Oracle and toyworld.OracleNet is oracle.OracleNet",
        "assert not hasattr(toyworld, '__getattr__')",
    ])
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=root)
    assert out.returncode == 0, out.stderr


@pytest.fixture(scope="module")
def oracle():
    return tw.Oracle.load()


@pytest.fixture(scope="module")
def fresh():
    attrs = tw.sample_attributes(100, HELD_OUT_SEED)
    return attrs, tw.render(attrs)


def test_oracle_reads_every_attribute(oracle, fresh):
    attrs, images = fresh
    pred = oracle.predict(images)
    assert set(pred[0]) == set(tw.ATTRIBUTES) | {"face"}
    acc = sum(tw.smile_label(p["smile"]) == tw.smile_label(a["smile"]) for p, a in zip(pred, attrs)) / 100
    assert acc >= 0.96
    assert sum(abs(p["smile"] - a["smile"]) for p, a in zip(pred, attrs)) / 100 < 0.12
    for k in tw.CATEGORICAL:
        pairs = [(p, a) for p, a in zip(pred, attrs) if k != "hair_color" or a["hair"] != "none"]
        assert sum(p[k] == a[k] for p, a in pairs) / len(pairs) >= 0.96, k
    assert sum(p["face"] > 0.5 for p in pred) >= 98


def test_oracle_smile_is_continuous(oracle):
    base = tw.sample_attributes(10, HELD_OUT_SEED + 1)
    values = torch.linspace(-1, 1, 9)
    images = tw.render([dict(a, smile=float(v)) for a in base for v in values])
    smile = oracle.scores(images)["smile"].view(10, 9)
    assert (smile.diff(dim=1) > -0.05).all()  # monotone in the true smile, up to small wobbles
    assert (smile - values).abs().mean() < 0.12


def test_oracle_rejects_non_faces(oracle, fresh):
    _, images = fresh
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(images.shape, generator=g).clamp(-1, 1)
    p = images.shape[-1] // 4
    tiles = images.reshape(100, 3, 4, p, 4, p).permute(0, 2, 4, 1, 3, 5).reshape(100, 16, 3, p, p)
    scrambled = tiles[:, torch.randperm(16, generator=g)].reshape(100, 4, 4, 3, p, p).permute(0, 3, 1, 4, 2, 5)
    scrambled = scrambled.reshape(images.shape)
    blended = 0.5 * images + 0.5 * images.roll(1, 0).roll(9, 3)
    mush = tw.gaussian_blur(images, 6.0)
    for name, x in {"noise": noise, "scrambled": scrambled, "blended": blended, "mush": mush}.items():
        face = oracle.scores(x)["face"]
        assert face.mean() < 0.15 and (face < 0.5).float().mean() >= 0.9, name


# ----------------------------------------------------------------------------------------------
# the shipped toy CLIP

@pytest.fixture(scope="module")
def toy_clip():
    from asyrp_lib.models.clip import CLIPEncoder
    return CLIPEncoder.from_pretrained(tw.data_dir() / "toy_clip", device="cpu")


def test_toy_clip_tokenizer():
    from transformers import AutoTokenizer, CLIPTokenizer
    folder = tw.data_dir() / "toy_clip"
    a, b = CLIPTokenizer.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    text = "Portrait of a frowning person with long red hair, glasses and eyes closed"
    assert a(text).input_ids == b(text).input_ids
    for word in tw.caption_vocabulary():
        assert len(a(word, add_special_tokens=False).input_ids) == 1, word
    assert a.convert_ids_to_tokens(a("zebra", add_special_tokens=False).input_ids) == ["z", "e", "b", "r", "a</w>"]


def test_toy_clip_files():
    import json
    folder = tw.data_dir() / "toy_clip"
    proc = json.loads((folder / "preprocessor_config.json").read_text())
    assert proc["crop_size"]["height"] == 64 and proc["image_mean"][0] == pytest.approx(0.48145466)
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["vision_config"]["image_size"] == 64


@torch.no_grad()
def test_toy_clip_zero_shot(toy_clip, fresh):
    attrs, images = fresh
    keep = [i for i, a in enumerate(attrs) if tw.smile_label(a["smile"]) != "neutral"]
    truth = torch.tensor([attrs[i]["smile"] > 0 for i in keep]).long()
    text = toy_clip.encode_text(["a frowning face", "a smiling face"])
    for sigma in (0.0, 2.5):
        x = images[keep] if sigma == 0 else tw.gaussian_blur(images[keep], sigma)
        acc = ((toy_clip.encode_image(x) @ text.T).argmax(1) == truth).float().mean()
        assert acc >= (0.93 if sigma == 0 else 0.8), sigma
    text = toy_clip.encode_text(["a face without glasses", "a face with glasses"])
    truth = torch.tensor([a["glasses"] == "yes" for a in attrs]).long()
    assert ((toy_clip.encode_image(images) @ text.T).argmax(1) == truth).float().mean() >= 0.88


@torch.no_grad()
def test_toy_clip_directional_similarity(toy_clip, fresh):
    attrs = fresh[0][:40]
    neutral = toy_clip.encode_image(tw.render([dict(a, smile=0.0) for a in attrs]))
    smiling = toy_clip.encode_image(tw.render([dict(a, smile=0.8) for a in attrs]))
    t = toy_clip.encode_text(["face", "smiling face"])
    cos = F.normalize(smiling - neutral, dim=-1) @ F.normalize(t[1] - t[0], dim=0)
    assert cos.mean() > 0.1 and (cos > 0).float().mean() > 0.9
