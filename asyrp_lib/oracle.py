"""The toy-world oracle: a small CNN that reads every attribute back from an image.

It is the ruler for every toy-world metric. One shared convolutional trunk feeds one head per
attribute (``smile`` as a regression in [-1, 1], a classifier for each categorical attribute) and a
``face`` head: the probability that the image is a well-formed toy face at all. The face head is
trained against the things a broken diffusion sample looks like (``corrupt``): noise, heavily
noised or blurred faces, scrambled patches, two faces blended, broken colour channels.

Load the shipped weights with ``Oracle.load()``; ``scripts/train_oracle.py`` reproduces them.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import toyworld as tw

WEIGHTS_FILE = "oracle.safetensors"
CONFIG_FILE = "oracle.json"
HEADS = {"smile": 1, **{k: len(tw.ATTRIBUTES[k]) for k in tw.CATEGORICAL}, "face": 1}


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
        folder = Path(path) if path is not None else tw.data_dir()
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
        from ._utils import check_images
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
            for k in tw.CATEGORICAL:
                d[k] = tw.ATTRIBUTES[k][int(s[k][i].argmax())]
            d["face"] = float(s["face"][i])
            out.append(d)
        return out


# ----------------------------------------------------------------------------------------------
# Negatives for the face head

CORRUPTIONS = ("noise", "smooth_noise", "noised", "mush", "scramble", "blend", "channels", "half")


def corrupt(images: torch.Tensor, generator: torch.Generator, kinds=CORRUPTIONS) -> torch.Tensor:
    """Turn each face into a non-face, choosing one of ``kinds`` at random per image."""
    n, c, h, w = images.shape
    g = generator
    choice = torch.randint(len(kinds), (n,), generator=g)
    out = images.clone()
    for j, kind in enumerate(kinds):
        idx = (choice == j).nonzero().flatten()
        if idx.numel() == 0:
            continue
        x = images[idx]
        m = idx.numel()
        if kind == "noise":
            x = torch.randn(x.shape, generator=g) * (0.3 + 0.7 * torch.rand(m, 1, 1, 1, generator=g))
        elif kind == "smooth_noise":
            cells = int(torch.randint(2, 17, (1,), generator=g))
            x = torch.randn(m, c, cells, cells, generator=g) * 0.7
            x = F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False)
        elif kind == "noised":  # x_t with alpha in [0.03, 0.35]: the face is mostly gone
            a = (0.03 + 0.32 * torch.rand(m, 1, 1, 1, generator=g))
            x = a.sqrt() * x + (1 - a).sqrt() * torch.randn(x.shape, generator=g)
        elif kind == "mush":
            x = tw.gaussian_blur(x, 3.5 + 4.0 * torch.rand(m, generator=g))
        elif kind == "scramble":
            p = int((4, 8, 16)[int(torch.randint(3, (1,), generator=g))])
            k = h // p
            x = x.reshape(m, c, k, p, k, p).permute(0, 2, 4, 1, 3, 5).reshape(m, k * k, c, p, p)
            x = x[:, torch.randperm(k * k, generator=g)]
            x = x.reshape(m, k, k, c, p, p).permute(0, 3, 1, 4, 2, 5).reshape(m, c, h, w)
        elif kind == "blend":
            lam = 0.35 + 0.3 * torch.rand(m, 1, 1, 1, generator=g)
            shift = (int(torch.randint(-12, 13, (1,), generator=g)), int(torch.randint(-12, 13, (1,), generator=g)))
            other = torch.roll(x.flip(0), shifts=shift, dims=(2, 3))
            x = lam * x + (1 - lam) * other
        elif kind == "channels":
            r = int(torch.randint(3, (1,), generator=g))
            if r == 0:
                x = -x  # negative image
            elif r == 1:
                x = x[:, torch.tensor([2, 0, 1])]
                x = x.clone()
                x[:, int(torch.randint(3, (1,), generator=g))] = torch.rand(1, generator=g) * 2 - 1
            else:
                x = x.clone()
                x[:, int(torch.randint(3, (1,), generator=g))] *= -1
        elif kind == "half":  # half the image replaced by noise or by another face's half
            x = x.clone()
            other = torch.randn(x.shape, generator=g) * 0.6 if torch.rand(1, generator=g) < 0.5 else x.flip(0)
            if torch.rand(1, generator=g) < 0.5:
                x[:, :, h // 2:] = other[:, :, :h - h // 2]
            else:
                x[:, :, :, w // 2:] = torch.roll(other, w // 4, dims=3)[:, :, :, w // 2:]
        out[idx] = x.clamp(-1, 1)
    return out


def augment_light(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Small imperfections a good generated face may have: slight blur, noise, contrast and colour shifts."""
    g = generator
    n = images.shape[0]
    sigma = torch.where(torch.rand(n, generator=g) < 0.5, 0.9 * torch.rand(n, generator=g), torch.zeros(n))
    x = tw.gaussian_blur(images, sigma)
    x = x + torch.randn(x.shape, generator=g) * (0.06 * torch.rand(n, 1, 1, 1, generator=g))
    x = x * (1 + 0.08 * (torch.rand(n, 1, 1, 1, generator=g) - 0.5)) + 0.06 * (torch.rand(n, 3, 1, 1, generator=g) - 0.5)
    return x.clamp(-1, 1)
