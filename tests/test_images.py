"""Tests for asyrp_lib.images: loading any image file as a tensor in [-1, 1], and saving PNGs."""
import numpy as np
import pytest
import torch
from PIL import Image

from asyrp_lib.images import load_image, load_images, save_images


def test_rgb_exact_size_round_trip(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "a.png")
    x = load_image(tmp_path / "a.png", 16)
    assert x.shape == (1, 3, 16, 16) and x.dtype == torch.float32
    assert torch.allclose(x[0].permute(1, 2, 0), torch.from_numpy(arr).float() / 127.5 - 1)
    save_images(x, tmp_path / "out", ["a.jpg"])
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "a.png")), arr)


def test_rgba_composited_on_white(tmp_path, capsys):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 255  # red, fully transparent on the left half, opaque on the right
    rgba[:, 4:, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    x = load_image(tmp_path / "t.png", 8)
    assert torch.allclose(x[0, :, :, :4], torch.ones(3, 8, 4))  # white
    assert torch.allclose(x[0, :, :, 4:], torch.tensor([1.0, -1.0, -1.0]).view(3, 1, 1).expand(3, 8, 4))
    assert "RGBA composited on white" in capsys.readouterr().err


def test_grayscale_and_palette(tmp_path):
    Image.fromarray(np.full((8, 8), 255, np.uint8), "L").save(tmp_path / "g.png")
    x = load_image(tmp_path / "g.png", 8)
    assert x.shape == (1, 3, 8, 8) and torch.allclose(x, torch.ones_like(x))
    pal = Image.new("P", (8, 8))
    pal.putpalette([0, 0, 255] + [0] * 765)  # index 0 is blue
    pal.save(tmp_path / "p.png")
    y = load_image(tmp_path / "p.png", 8)
    assert torch.allclose(y[0, :, 0, 0], torch.tensor([-1.0, -1.0, 1.0]))
    pal.info["transparency"] = 0
    pal.save(tmp_path / "pt.png", transparency=0)
    z = load_image(tmp_path / "pt.png", 8)
    assert torch.allclose(z, torch.ones_like(z))  # transparent → white


def test_odd_size_centre_crop_and_resize(tmp_path, capsys):
    arr = np.zeros((30, 50, 3), np.uint8)
    arr[:, 10:40] = 255  # a centred white square 30×30 in a black 50-wide strip
    Image.fromarray(arr).save(tmp_path / "wide.png")
    x = load_image(tmp_path / "wide.png", 15)
    assert x.shape == (1, 3, 15, 15)
    assert x.min() > 0.95  # the crop kept only the white square
    assert "50×30 centre-cropped and resized to 15×15" in capsys.readouterr().err


def test_exif_rotation(tmp_path):
    arr = np.zeros((10, 20, 3), np.uint8)
    arr[:, :10] = 255  # white left half of a landscape image
    img = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    img.save(tmp_path / "r.jpg", exif=exif, quality=100)
    x = load_image(tmp_path / "r.jpg", 10)  # displayed 10 wide × 20 high: white is now on top
    col = x[0, 0, :, 5]
    assert col.shape == (10,)
    # after the rotation the portrait image is centre-cropped: rows 5..15 of the displayed picture;
    # its top half (displayed rows 5..10) is white, the bottom black
    assert col[:4].min() > 0.8 and col[-4:].max() < -0.8


def test_unreadable_and_missing(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match="bad.png: not a readable image file"):
        load_image(tmp_path / "bad.png", 8)
    with pytest.raises(ValueError, match="no such"):
        load_images(tmp_path / "missing", 8)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        load_images(tmp_path / "empty", 8)
    with pytest.raises(ValueError, match="size"):
        load_image(tmp_path / "bad.png", 0)


def test_folder_sorted_and_mixed(tmp_path):
    Image.new("RGB", (12, 12), (255, 0, 0)).save(tmp_path / "b.png")
    Image.new("L", (9, 7), 0).save(tmp_path / "a.bmp")
    (tmp_path / "notes.txt").write_text("ignored")
    x, names = load_images(tmp_path, 8)
    assert names == ["a.bmp", "b.png"] and x.shape == (2, 3, 8, 8)
    assert -1 <= x.min() and x.max() <= 1
    with pytest.raises(ValueError, match="names"):
        save_images(x, tmp_path / "o", ["one"])
