"""The Colab path on the tiny profile: editing in chunks, ``asyrp edit`` streaming a folder, the bounded inversion
cache, uploads, and clear errors for models and inputs that do not fit."""
import io
import json
import os
import time

import numpy as np
import pytest
import torch
from PIL import Image
from _directions import smooth_faces

from asyrp_lib.core.cache import InversionCache
from asyrp_lib.front.cli import main
from asyrp_lib.core.delta_net import DeltaNet
from asyrp_lib.images import load_image, load_upload
from asyrp_lib.core.pipeline import CHUNK_PIXELS, AsyrpEditor, default_batch_size

STEPS = 4


def _direction(tiny, seed=0):
    torch.manual_seed(seed)
    net = DeltaNet(tiny.h_shape)
    torch.nn.init.normal_(net.conv_out.weight, std=0.05)  # a non-zero edit (the last layer starts at zero)
    return net


def _saved_direction(tiny, folder):
    """A random non-zero direction saved as `asyrp train` would, for the CLI tests."""
    return _direction(tiny).save(folder, model_id=tiny.model_id, source="face", target="smiling face",
                                 t_edit=500, t_boost=250, steps=STEPS, image_size=tiny.image_size)


# ----------------------------------------------------------------------------------------------
# AsyrpEditor.edit in chunks
# ----------------------------------------------------------------------------------------------
def test_chunks_equal_editing_each_chunk_in_turn(tiny):
    editor = AsyrpEditor(tiny, n_steps=STEPS, progress=False)
    net, x0 = _direction(tiny), smooth_faces(3)
    kw = dict(t_edit=500, t_boost=250)  # the last step boosts: noise from the generator
    whole = editor.edit(x0, [(net, 1.0)], batch_size=2, generator=torch.Generator().manual_seed(3), **kw)
    g = torch.Generator().manual_seed(3)
    parts = [editor.edit(x0[i:i + 2], [(net, 1.0)], generator=g, **kw) for i in (0, 2)]
    for field in ("edited", "reconstruction", "source", "x_T"):
        assert torch.equal(getattr(whole, field), torch.cat([getattr(p, field) for p in parts])), field
    assert whole.edited.shape == (3, 3, 32, 32) and whole.strengths == [1.0]


def test_chunks_do_not_change_the_deterministic_maths(tiny):
    """With η = 0 everywhere, chunking changes nothing but float rounding (batched convolutions round
    differently); previews are gathered too."""
    editor = AsyrpEditor(tiny, n_steps=STEPS, progress=False)
    net, x0 = _direction(tiny, 1), smooth_faces(3, seed=1)
    one = editor.edit(x0, [(net, -1.0)], t_edit=500, t_boost=0, keep_previews=True)  # one chunk: the default
    chunked = editor.edit(x0, [(net, -1.0)], t_edit=500, t_boost=0, batch_size=2, keep_previews=True)
    assert torch.equal(one.x_T, chunked.x_T)  # cached: the inversions are reused
    assert torch.allclose(one.edited, chunked.edited, atol=2e-4)
    assert torch.allclose(one.reconstruction, chunked.reconstruction, atol=2e-4)
    assert [t for t, _ in one.previews] == [t for t, _ in chunked.previews]
    assert all(torch.allclose(a, b, atol=2e-4) for (_, a), (_, b) in zip(one.previews, chunked.previews))


def test_batch_size_is_checked_and_has_a_default(tiny):
    editor = AsyrpEditor(tiny, n_steps=STEPS, progress=False)
    assert CHUNK_PIXELS == 4 * 256 * 256 and editor.batch_size == default_batch_size(32) == 256
    assert default_batch_size(256) == 4 and default_batch_size(64) == 64 and default_batch_size(4096) == 1
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="batch_size"):
            editor.edit(smooth_faces(1), [(_direction(tiny), 1.0)], t_edit=500, t_boost=0, batch_size=bad)


# ----------------------------------------------------------------------------------------------
# asyrp edit streams a folder
# ----------------------------------------------------------------------------------------------
def _write_folder(folder, n, size=32):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"img{i:03d}.png")
    return folder


def test_cli_edit_streams_in_chunks_with_the_same_outputs(tmp_path, tiny, monkeypatch, capsys):
    monkeypatch.setenv("ASYRP_CACHE", str(tmp_path / "cache"))
    d = _saved_direction(tiny, tmp_path / "dir")
    inputs = _write_folder(tmp_path / "in", 3)
    seen = []
    real_edit = AsyrpEditor.edit

    def spy(self, images, *a, **k):
        seen.append(images.shape[0])
        return real_edit(self, images, *a, **k)

    monkeypatch.setattr(AsyrpEditor, "edit", spy)
    assert main(["edit", "--profile", "tiny", "--device", "cpu", "--direction", str(d), "--input", str(inputs),
                 "--output", str(tmp_path / "out"), "--batch-size", "2", "--seed", "7",
                 "--compare", str(tmp_path / "grid.png")]) == 0
    assert seen == [2, 1]  # never more than one chunk of images at a time
    err = capsys.readouterr().err
    assert "2 chunk(s) of at most 2" in err and "wrote 3 edited image(s)" in err
    monkeypatch.setattr(AsyrpEditor, "edit", real_edit)

    # The same PNGs as editing all images at once with that batch size and seed.
    editor = AsyrpEditor(tiny, n_steps=STEPS, progress=False)
    x = torch.cat([load_image(p, 32, verbose=False) for p in sorted(inputs.iterdir())])
    ref = editor.edit(x, [(str(d), 1.0)], generator=torch.Generator().manual_seed(7), batch_size=2)
    from asyrp_lib.images import save_images

    save_images(ref.edited, tmp_path / "ref", [p.name for p in sorted(inputs.iterdir())])
    for p in sorted((tmp_path / "ref").iterdir()):
        assert np.array_equal(np.asarray(Image.open(p)), np.asarray(Image.open(tmp_path / "out" / p.name))), p.name
    w, h = Image.open(tmp_path / "grid.png").size
    assert w == h > 3 * 32  # 3 images across, 3 rows (inputs, reconstructions, edits) gathered over the chunks


def test_cli_edit_bad_input_folder(tmp_path, tiny, capsys):
    d = _direction(tiny).save(tmp_path / "dir", model_id=tiny.model_id, t_edit=500, t_boost=0, steps=STEPS,
                              image_size=tiny.image_size)
    (tmp_path / "empty").mkdir()
    assert main(["edit", "--profile", "tiny", "--direction", str(d), "--input", str(tmp_path / "empty"),
                 "--output", str(tmp_path / "o")]) == 2
    assert "no image files found" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# asyrp evaluate only in the toy world
# ----------------------------------------------------------------------------------------------
def test_evaluate_refuses_models_of_another_world(tmp_path, tiny, capsys):
    d = _direction(tiny).save(tmp_path / "dir", model_id=tiny.model_id, t_edit=500, t_boost=0, steps=STEPS)
    for profile in ("celebahq", "google/ddpm-ema-church-256", str(tmp_path)):
        start = time.perf_counter()
        assert main(["evaluate", "--profile", profile, "--direction", str(d), "--attribute", "smile",
                     "--value", "smiling"]) == 2
        err = capsys.readouterr().err
        assert "--profile" in err and "toy" in err and "oracle" in err and "Traceback" not in err
        assert time.perf_counter() - start < 5  # refused before any model loads


# ----------------------------------------------------------------------------------------------
# The inversion cache is bounded on disk
# ----------------------------------------------------------------------------------------------
def test_inversion_cache_disk_bound_removes_the_least_recently_used(tmp_path, tiny):
    cache = InversionCache(tmp_path / "inv", max_memory=0, max_disk_files=3)
    ts, x = [750, 500, 250, 0], smooth_faces(5)

    def invert(i):
        time.sleep(0.02)  # file times are coarse (a few ms): keep the order of use unambiguous
        cache.invert(tiny.unet, x[i:i + 1], ts, tiny.schedule, model="m", progress=False)

    def on_disk():
        return {p.stem for p in cache.disk_files()}

    keys = [cache.key("m", img, ts) for img in x]
    for i in range(4):
        invert(i)
    assert on_disk() == {keys[1], keys[2], keys[3]}  # 4 written, the oldest removed
    invert(1)  # a hit: now the most recently used
    assert cache.hits == 1
    invert(4)
    assert on_disk() == {keys[3], keys[1], keys[4]}  # image 2 was the least recently used
    both = InversionCache(tmp_path / "inv2", max_memory=0, max_disk_files=3)
    both.invert(tiny.unet, x, ts, tiny.schedule, model="m", progress=False)  # one batch larger than the bound
    assert len(both.disk_files()) == 3

    size = cache.disk_files()[0].stat().st_size
    by_bytes = InversionCache(tmp_path / "inv", max_memory=0, max_disk_bytes=2 * size)
    assert by_bytes.prune() == 1 and len(by_bytes.disk_files()) == 2
    assert InversionCache(tmp_path / "inv").max_disk_bytes == InversionCache.DEFAULT_MAX_DISK_BYTES
    for bad in (dict(max_disk_files=-1), dict(max_disk_bytes=1.5), dict(max_memory=None)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            InversionCache(tmp_path, **bad)


def test_editor_passes_its_cache_bounds(tmp_path, tiny):
    editor = AsyrpEditor(tiny, n_steps=STEPS, progress=False, cache_dir=tmp_path / "inv", cache_memory=1,
                         cache_disk_bytes=10)
    editor.invert(smooth_faces(3))
    assert len(editor.cache.memory) == 1 and editor.cache.disk_files() == []  # 10 bytes hold no inversion


# ----------------------------------------------------------------------------------------------
# Uploads and odd images
# ----------------------------------------------------------------------------------------------
def _png_bytes(arr, mode=None, fmt="PNG"):
    buf = io.BytesIO()
    Image.fromarray(arr, mode).save(buf, format=fmt)
    return buf.getvalue()


def test_load_upload_any_size_and_mode(capsys):
    rgba = np.zeros((40, 60, 4), np.uint8)
    rgba[..., 1] = 255
    rgba[..., 3] = 255
    x = load_upload(_png_bytes(rgba, "RGBA"), 32, name="me.png")
    assert x.shape == (1, 3, 32, 32) and x.dtype == torch.float32
    assert torch.allclose(x[0, :, 0, 0], torch.tensor([-1.0, 1.0, -1.0]))
    err = capsys.readouterr().err
    assert "me.png" in err and "centre-cropped" in err and "RGBA composited on white" in err
    gray = load_upload(memoryview(_png_bytes(np.full((32, 32), 255, np.uint8), "L")), 32)  # ipywidgets 8 form
    assert torch.allclose(gray, torch.ones_like(gray))
    jpeg = load_upload(bytearray(_png_bytes(np.zeros((64, 64, 3), np.uint8), fmt="JPEG")), 32, verbose=False)
    assert jpeg.shape == (1, 3, 32, 32)


@pytest.mark.parametrize("data, match", [
    (b"", "empty"),
    (b"%PDF-1.4 not an image at all", "not an image file"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "not an image file"),  # a broken PNG
    ("photo.png", "expected the bytes"),
    ({"photo.png": {"content": b""}}, "FileUpload"),
])
def test_load_upload_refuses_non_images(data, match):
    with pytest.raises(ValueError, match=match) as err:
        load_upload(data, 32, name="photo.png")
    assert str(err.value).startswith("data:")


def test_notes_for_very_small_or_elongated_images(tmp_path, capsys):
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(tmp_path / "small.png")
    Image.fromarray(np.zeros((20, 90, 3), np.uint8)).save(tmp_path / "strip.png")
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(tmp_path / "fine.png")
    assert load_image(tmp_path / "small.png", 32).shape == (1, 3, 32, 32)
    err = capsys.readouterr().err
    assert "small.png" in err and "very small" in err and "3.2×" in err
    load_image(tmp_path / "strip.png", 32)
    err = capsys.readouterr().err
    assert "very elongated (4.5:1)" in err and "22 %" in err
    load_image(tmp_path / "fine.png", 32)
    err = capsys.readouterr().err
    assert "centre-cropped" in err and "warning" not in err


# ----------------------------------------------------------------------------------------------
# Models that are not a UNet2DModel with a mid block
# ----------------------------------------------------------------------------------------------
def _tiny_config():
    from asyrp_lib.models.profiles import CONFIG_DIR

    return json.loads((CONFIG_DIR / "tiny_unet.json").read_text())


def test_folder_of_another_model_class_is_refused_before_loading(tmp_path):
    from asyrp_lib.models.profiles import load_profile

    (tmp_path / "vae").mkdir()
    (tmp_path / "vae" / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL", "in_channels": 3}))
    (tmp_path / "clip").mkdir()
    (tmp_path / "clip" / "config.json").write_text(json.dumps({"architectures": ["CLIPModel"]}))
    (tmp_path / "empty").mkdir()
    (tmp_path / "pipe" / "unet").mkdir(parents=True)
    (tmp_path / "pipe" / "model_index.json").write_text("{}")
    (tmp_path / "pipe" / "unet" / "config.json").write_text(json.dumps(_tiny_config()))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{not json")
    cases = {"vae": "holds a model of class AutoencoderKL", "clip": "holds a model of class CLIPModel",
             "empty": "has no config.json", "pipe": "pipeline folder: pass its U-Net", "bad": "cannot read"}
    for folder, match in cases.items():
        with pytest.raises(ValueError, match=match) as err:
            load_profile(str(tmp_path / folder), device="cpu")
        assert str(err.value).startswith("name:") and "UNet2DModel" in str(err.value)


def test_unet_without_a_mid_block_is_refused(tmp_path, capsys):
    from diffusers import UNet2DModel

    from asyrp_lib.models.profiles import load_profile

    UNet2DModel.from_config({**_tiny_config(), "mid_block_type": None}).save_pretrained(tmp_path / "nomid")
    with pytest.raises(ValueError, match="name: .*nomid.*no mid block"):
        load_profile(str(tmp_path / "nomid"), device="cpu")
    assert main(["sample", "--profile", str(tmp_path / "nomid"), "--output", str(tmp_path / "x.png")]) == 2
    assert "no mid block" in capsys.readouterr().err


def test_hub_id_is_checked_offline_within_seconds(monkeypatch):
    from asyrp_lib.models.profiles import HubUnavailableError, load_profile

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", os.devnull + "-nothing-cached")
    start = time.perf_counter()
    with pytest.raises(HubUnavailableError, match="someone/not-cached"):
        load_profile("someone/not-cached", device="cpu")
    assert time.perf_counter() - start < 10


def test_cli_edit_precision_reaches_the_editor(tmp_path, tiny, monkeypatch, capsys):
    """``asyrp edit --precision bf16`` edits with a bf16 editor (the default stays fp32); a bad value is refused."""
    monkeypatch.setenv("ASYRP_CACHE", str(tmp_path / "cache"))
    d = _saved_direction(tiny, tmp_path / "dir")
    inputs = _write_folder(tmp_path / "in", 2)
    seen = []
    real_init = AsyrpEditor.__init__

    def spy(self, *a, **k):
        seen.append(k.get("precision", "fp32"))
        real_init(self, *a, **k)

    monkeypatch.setattr(AsyrpEditor, "__init__", spy)
    for extra in ([], ["--precision", "bf16"]):
        assert main(["edit", "--profile", "tiny", "--device", "cpu", "--direction", str(d), "--input", str(inputs),
                     "--output", str(tmp_path / f"out{len(extra)}"), *extra]) == 0
    assert seen == ["fp32", "bf16"]
    assert len(list((tmp_path / "out2").glob("*.png"))) == 2
    with pytest.raises(SystemExit):
        main(["edit", "--profile", "tiny", "--direction", str(d), "--input", str(inputs), "--output",
              str(tmp_path / "o"), "--precision", "fp16"])


def test_cli_precision_choices_are_the_librarys():
    from asyrp_lib._utils import PRECISIONS
    from asyrp_lib.front.cli import build_parser

    edit = build_parser()._subparsers._group_actions[0].choices["edit"]
    assert next(a for a in edit._actions if a.dest == "precision").choices == PRECISIONS
