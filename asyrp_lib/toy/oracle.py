"""The toy-world oracle: a small CNN that reads every attribute back from an image.

It is the ruler for every toy-world metric. One shared convolutional trunk feeds one head per
attribute (``smile`` as a regression in [-1, 1], a classifier for each categorical attribute) and a
``face`` head: the probability that the image is a well-formed toy face at all. The face head is
trained against the things a broken diffusion sample looks like (``corrupt`` in
``scripts/train_oracle.py``): noise, heavily noised or blurred faces, scrambled patches, two faces
blended, broken colour channels.

Load the shipped weights with ``Oracle.load()``; ``scripts/train_oracle.py`` reproduces them. The heads
follow the attribute definitions of ``asyrp_lib.toy.toyattributes``; this module does not import the renderer
(``asyrp_lib.toy.toyworld``, which re-exports ``Oracle`` and ``OracleNet``).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._utils import check_images, data_dir
from .toyattributes import ATTRIBUTES, CATEGORICAL

WEIGHTS_FILE = "oracle.safetensors"
CONFIG_FILE = "oracle.json"
HEADS = {"smile": 1, **{k: len(ATTRIBUTES[k]) for k in CATEGORICAL}, "face": 1}


class OracleNet(nn.Module):
    """Conv trunk (stride-2 stem, then stride-2 stages) -> [avg-pool ; max-pool] -> MLP -> one slice of outputs per head."""

    def __init__(self, channels=(32, 64, 128), hidden: int = 128, image_size: int = 64):
        super().__init__()
        self.config = {"channels": list(channels), "hidden": hidden, "image_size": image_size}
        # stem: a 4x4 stride-2 conv (64 -> 32 pixels) that still sees every pixel
        layers = [nn.Conv2d(3, channels[0], 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(channels[0]),
                  nn.ReLU(inplace=True)]
        c_in = channels[0]
        for i, c in enumerate(channels):
            if i > 0:
                layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            layers += [nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            c_in = c
        self.trunk = nn.Sequential(*layers)
        self.mlp = nn.Sequential(nn.Linear(2 * c_in, hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, sum(HEADS.values())))
        self.image_size = image_size

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw outputs per head: ``smile`` (N,) in [-1, 1], logits (N, K) per category, ``face`` logit (N,)."""
        if images.shape[-2:] != (self.image_size, self.image_size):
            images = F.interpolate(images, size=(self.image_size, self.image_size), mode="bilinear",
                                   antialias=True, align_corners=False)
        f = self.trunk(images)
        f = torch.cat([f.mean((2, 3)), f.amax((2, 3))], 1)
        out = self.mlp(f)
        res, i = {}, 0
        for name, k in HEADS.items():
            res[name] = out[:, i:i + k]
            i += k
        res["smile"] = torch.tanh(res["smile"][:, 0])
        res["face"] = res["face"][:, 0]
        return res


class Oracle:
    """Reads toy-world attributes from images. ``Oracle.load()`` gives the shipped one."""

    def __init__(self, net: OracleNet, device=None):
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.net = net.to(self.device).eval()

    @classmethod
    def load(cls, device=None, path=None) -> "Oracle":
        """Load the weights from ``path`` (a folder; default ``toyworld.data_dir()``), with no network."""
        from safetensors.torch import load_file
        folder = Path(path) if path is not None else data_dir()
        wfile, cfile = folder / WEIGHTS_FILE, folder / CONFIG_FILE
        if not wfile.is_file() or not cfile.is_file():
            raise FileNotFoundError(f"Oracle.load: {wfile} or {cfile} is missing; set ASYRP_DATA to the folder "
                                    "holding them, or train one with scripts/train_oracle.py")
        cfg = json.loads(cfile.read_text())
        net = OracleNet(cfg["channels"], cfg["hidden"], cfg["image_size"])
        state = {k: v.float() for k, v in load_file(str(wfile)).items()}
        missing, unexpected = net.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.endswith("num_batches_tracked")]
        if missing or unexpected:
            raise ValueError(f"Oracle.load: {wfile} does not match {cfile} (missing {missing}, unexpected {unexpected})")
        return cls(net, device)

    @torch.no_grad()
    def scores(self, images: torch.Tensor, batch_size: int = 256) -> dict[str, torch.Tensor]:
        """Per-head tensors on the CPU: ``smile`` (N,), class probabilities (N, K), ``face`` probability (N,)."""
        check_images(images, "images", channels=3, tol=0.5)  # slight overshoot (raw samples) is clamped
        parts = []
        for i in range(0, images.shape[0], batch_size):
            out = self.net(images[i:i + batch_size].to(self.device, torch.float32).clamp(-1, 1))
            parts.append({k: (v if k == "smile" else torch.sigmoid(v) if k == "face" else v.softmax(-1)).cpu()
                          for k, v in out.items()})
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    def predict(self, images: torch.Tensor) -> list[dict]:
        """One dict per image: the attributes as ``sample_attributes`` gives them (smile a float; no ``jitter``),
        plus ``"face"``, the probability that the image is a well-formed toy face."""
        s = self.scores(images)
        out = []
        for i in range(s["smile"].shape[0]):
            d = {"smile": float(s["smile"][i])}
            for k in CATEGORICAL:
                d[k] = ATTRIBUTES[k][int(s[k][i].argmax())]
            d["face"] = float(s["face"][i])
            out.append(d)
        return out

