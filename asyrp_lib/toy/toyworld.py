"""The toy face world: procedural cartoon faces whose every attribute is known.

A face is a dict of attributes (``sample_attributes``) that ``render`` turns into an image, pixel for
pixel the same on every machine. Because the ground truth of each image is known, an edit made by a
diffusion model can be *measured*: the ``Oracle`` (a small CNN shipped in ``data/``) reads the
attributes back from any image and says whether it still is a well-formed face at all.

Attributes (``ATTRIBUTES``):

======================  ==========================================================================
``smile``               float in [-1, 1]: the mouth curve; -1 frown, 0 straight, +1 smile. Labels
                        (``smile_label``): "smiling" > 0.33, "frowning" < -0.33, else "neutral".
``eyes``                "open" / "closed"
``glasses``             "no" / "yes"
``hair``                "none" (bald) / "short" / "long"
``hair_color``          "black" / "brown" / "blond" / "red" (invisible, hence unreadable, when bald)
``skin``                "light" / "medium" / "dark"
``background``          "blue" / "green" / "gray" / "purple"
``jitter``              dict of small nuisance variations (position ``dx``/``dy``, ``scale``,
                        ``aspect`` of the head, ``eye_gap``); not an attribute to edit
======================  ==========================================================================

The attribute definitions (``ATTRIBUTES``, ``CATEGORICAL``, ``SMILE_THRESHOLD``, ``SMILE_LABELS``,
``smile_label``) live in ``asyrp_lib.toy.toyattributes`` and are re-exported here.

Contents: ``sample_attributes(n, seed)``, ``render(attrs, size=64)``, ``caption(attrs, rng=None)``,
``ToyFaces`` (a torch ``Dataset``), ``gaussian_blur`` (for stand-ins of blurry P_t previews), ``data_dir()``,
and ``Oracle`` / ``OracleNet`` (re-exported from ``asyrp_lib.toy.oracle``, trained by ``scripts/train_oracle.py``).
The toy CLIP (``data/toy_clip``, trained by ``scripts/train_toy_clip.py``) reads the same captions.

Rendering is signed-distance rasterisation in torch: every shape is a distance field, and a pixel's
coverage is its distance to the edge measured in pixels, clamped to [0, 1] (smooth, anti-aliased
edges). Everything is vectorised over the batch. Image coordinates run over [-1, 1] with y pointing
down.
"""
from __future__ import annotations

import json
import math
import random
import zlib

import numpy as np
import torch
from torch.utils.data import Dataset

from .._utils import data_dir  # noqa: F401  (re-exported: where the toy weights live)
from .oracle import Oracle, OracleNet  # noqa: F401  (re-exported: the ruler of the toy world)
from .toyattributes import ATTRIBUTES, CATEGORICAL, SMILE_LABELS, SMILE_THRESHOLD, smile_label  # noqa: F401

SKIN_RGB = {"light": (0.98, 0.85, 0.72), "medium": (0.84, 0.63, 0.45), "dark": (0.55, 0.37, 0.26)}
HAIR_RGB = {"black": (0.09, 0.08, 0.08), "brown": (0.38, 0.21, 0.09), "blond": (0.96, 0.83, 0.36),
            "red": (0.86, 0.24, 0.08)}
BACKGROUND_RGB = {"blue": (0.33, 0.53, 0.90), "green": (0.42, 0.76, 0.42), "gray": (0.62, 0.62, 0.62),
                  "purple": (0.62, 0.40, 0.80)}
_MOUTH_RGB = (0.55, 0.10, 0.14)
_PUPIL_RGB = (0.08, 0.08, 0.14)
_LASH_RGB = (0.15, 0.10, 0.10)
_FRAME_RGB = (0.05, 0.05, 0.07)
_LENS_RGB = (0.80, 0.92, 1.00)

JITTER_RANGES = {"dx": (-0.06, 0.06), "dy": (-0.05, 0.05), "scale": (0.92, 1.06), "aspect": (0.92, 1.08),
                 "eye_gap": (0.92, 1.08)}


def sample_attributes(n: int, seed: int = 0) -> list[dict]:
    """``n`` random faces (attribute dicts), deterministic in ``seed``.

    ``smile`` is drawn from three equally likely bands with margins around the label thresholds:
    frowning [-1, -0.45], neutral [-0.2, 0.2], smiling [0.45, 1]. Categorical attributes are uniform.
    """
    rng = np.random.default_rng(seed)
    out = []
    bands = ((-1.0, -0.45), (-0.2, 0.2), (0.45, 1.0))
    for _ in range(int(n)):
        lo, hi = bands[rng.integers(3)]
        a = {"smile": round(float(rng.uniform(lo, hi)), 4)}
        for k in CATEGORICAL:
            vals = ATTRIBUTES[k]
            a[k] = vals[rng.integers(len(vals))]
        a["jitter"] = {k: round(float(rng.uniform(*r)), 4) for k, r in JITTER_RANGES.items()}
        out.append(a)
    return out


# ----------------------------------------------------------------------------------------------
# Signed distance fields. Arguments are broadcastable tensors; x, y the pixel grid (1, H, W),
# shape parameters (N, 1, 1).

def _sd_ellipse(x, y, cx, cy, rx, ry):
    """Approximate signed distance to an ellipse (first-order correction of the implicit function)."""
    u, v = (x - cx) / rx, (y - cy) / ry
    k = torch.sqrt(u * u + v * v).clamp_min(1e-6)
    grad = torch.sqrt((u / rx) ** 2 + (v / ry) ** 2).clamp_min(1e-6) / k
    return (k - 1.0) / grad


def _sd_circle(x, y, cx, cy, r):
    return torch.sqrt((x - cx) ** 2 + (y - cy) ** 2) - r


def _sd_parabola_stroke(x, y, cx, cy, half_width, bend, thickness):
    """A stroke along y = cy + bend * (0.5 - ((x - cx) / half_width)^2) for |x - cx| <= half_width.

    Positive ``bend`` puts the middle lower than the ends (a smile, with y pointing down).
    """
    t = (x - cx) / half_width
    fy = cy + bend * (0.5 - t * t)
    slope = -2.0 * bend * t / half_width
    d_mid = (y - fy).abs() / torch.sqrt(1.0 + slope * slope)
    end_y = cy - 0.5 * bend
    d_left = torch.sqrt((x - (cx - half_width)) ** 2 + (y - end_y) ** 2)
    d_right = torch.sqrt((x - (cx + half_width)) ** 2 + (y - end_y) ** 2)
    d = torch.where(t.abs() <= 1.0, torch.minimum(d_mid, torch.minimum(d_left, d_right)),
                    torch.minimum(d_left, d_right))
    return d - 0.5 * thickness


def _sd_segment_h(x, y, x0, x1, yc, thickness):
    """Horizontal capsule from (x0, yc) to (x1, yc)."""
    nearest_x = torch.maximum(torch.minimum(x, x1), x0)
    return torch.sqrt((x - nearest_x) ** 2 + (y - yc) ** 2) - 0.5 * thickness


def _paint(img, sd, rgb, px, alpha=1.0, mask=None):
    """Composite colour ``rgb`` (N, 3, 1, 1) where ``sd`` < 0, with one-pixel smooth edges."""
    cov = (0.5 - sd / px).clamp(0.0, 1.0) * alpha
    if mask is not None:
        cov = cov * mask
    cov = cov.unsqueeze(1)
    return img * (1.0 - cov) + rgb * cov


def _as_list(attrs) -> list[dict]:
    if isinstance(attrs, dict):
        return [attrs]
    attrs = list(attrs)
    if not attrs or not all(isinstance(a, dict) for a in attrs):
        raise ValueError("attrs: expected a dict or a non-empty list of dicts from sample_attributes")
    return attrs


def _column(attrs, fn, device):
    return torch.tensor([fn(a) for a in attrs], dtype=torch.float32, device=device).view(-1, 1, 1)


def _colors(attrs, key, table, device):
    return torch.tensor([table[a[key]] for a in attrs], dtype=torch.float32, device=device).view(-1, 3, 1, 1)


def render(attrs, size: int = 64, device=None) -> torch.Tensor:
    """Render attribute dicts to images ``(N, 3, size, size)`` in [-1, 1] (a pure function of ``attrs``)."""
    attrs = _as_list(attrs)
    for a in attrs:
        for k in ATTRIBUTES:
            if k not in a:
                raise ValueError(f"attrs: missing attribute {k!r} (expected the keys of ATTRIBUTES)")
            if k != "smile" and a[k] not in ATTRIBUTES[k]:
                raise ValueError(f"attrs: {k}={a[k]!r} is not one of {ATTRIBUTES[k]}")
    device = torch.device(device) if device is not None else torch.device("cpu")
    chunk = max(1, 65536 // (size * size))  # keeps each field small enough to stay in cache
    with torch.no_grad():
        return torch.cat([_render(attrs[i:i + chunk], size, device) for i in range(0, len(attrs), chunk)])


def _render(attrs: list[dict], size: int, device) -> torch.Tensor:
    n = len(attrs)
    px = 2.0 / size
    coords = (torch.arange(size, dtype=torch.float32, device=device) + 0.5) * px - 1.0
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    x, y = x[None], y[None]

    def jit(key):
        return _column(attrs, lambda a: a.get("jitter", {}).get(key, 0.0 if key in ("dx", "dy") else 1.0), device)

    s = jit("scale")
    cx = jit("dx")
    cy = 0.04 + jit("dy")
    ry = 0.62 * s
    rx = 0.50 * s * jit("aspect")
    smile = _column(attrs, lambda a: max(-1.0, min(1.0, float(a["smile"]))), device)
    hair = _column(attrs, lambda a: ATTRIBUTES["hair"].index(a["hair"]), device)
    closed = _column(attrs, lambda a: float(a["eyes"] == "closed"), device)
    glasses = _column(attrs, lambda a: float(a["glasses"] == "yes"), device)

    skin = _colors(attrs, "skin", SKIN_RGB, device)
    hair_rgb = _colors(attrs, "hair_color", HAIR_RGB, device)
    img = _colors(attrs, "background", BACKGROUND_RGB, device).expand(n, 3, size, size).clone()

    def const(rgb):
        return torch.tensor(rgb, dtype=torch.float32, device=device).view(1, 3, 1, 1)

    # long hair: a mass behind the head reaching below the chin
    d_back = torch.maximum(_sd_ellipse(x, y, cx, cy + 0.06 * s, rx * 1.32, ry * 1.18), y - (cy + 0.78 * s))
    img = _paint(img, d_back, hair_rgb, px, mask=(hair == 2).float())
    # head with a darker outline
    d_head = _sd_ellipse(x, y, cx, cy, rx, ry)
    img = _paint(img, d_head - 0.025, skin * 0.62, px)
    img = _paint(img, d_head, skin, px)
    # hair cap: a rim over the top of the head, down to ear level (short) or further (long)
    d_cap = torch.maximum(_sd_ellipse(x, y, cx, cy - 0.03 * s, rx * 1.1, ry * 1.08),
                          -_sd_ellipse(x, y, cx, cy + 0.16 * s, rx * 0.9, ry * 0.9))
    cap_low = torch.where(hair == 2, cy + 0.25 * s, cy - 0.12 * s)
    d_cap = torch.maximum(d_cap, y - cap_low)
    img = _paint(img, d_cap, hair_rgb, px, mask=(hair > 0).float())
    # eyes and glasses, mirrored: xm is the distance from the face's midline, so one field draws both sides
    xm = cx + (x - cx).abs()
    ey = cy - 0.10 * s
    gap = 0.21 * s * jit("eye_gap") * jit("aspect")
    ex = cx + gap
    d_white = _sd_ellipse(xm, y, ex, ey, 0.095 * s, 0.075 * s)
    img = _paint(img, d_white, const((1.0, 1.0, 1.0)), px, mask=1.0 - closed)
    img = _paint(img, _sd_circle(xm, y, ex, ey + 0.005, 0.048 * s), const(_PUPIL_RGB), px, mask=1.0 - closed)
    d_lid = _sd_parabola_stroke(xm, y, ex, ey + 0.01 * s, 0.095 * s, 0.035 * s, 0.045 * s)
    img = _paint(img, d_lid, const(_LASH_RGB), px, mask=closed)
    r_lens = 0.15 * s
    d_lens = _sd_circle(xm, y, ex, ey, r_lens)
    img = _paint(img, d_lens, const(_LENS_RGB), px, alpha=0.35, mask=glasses)
    img = _paint(img, d_lens.abs() - 0.022 * s, const(_FRAME_RGB), px, mask=glasses)
    d_bridge = _sd_segment_h(x, y, cx - gap + r_lens, cx + gap - r_lens, ey - 0.02 * s, 0.04 * s)
    img = _paint(img, d_bridge, const(_FRAME_RGB), px, mask=glasses)
    # mouth: a broad parabola whose bend is the smile
    d_mouth = _sd_parabola_stroke(x, y, cx, cy + 0.30 * s, 0.24 * s, 0.17 * s * smile, 0.075 * s)
    img = _paint(img, d_mouth, const(_MOUTH_RGB), px)
    return (img * 2.0 - 1.0).clamp(-1.0, 1.0)


# ----------------------------------------------------------------------------------------------
# Captions

_SMILE_WORDS = {"smiling": ("smiling", "happy", "grinning", "cheerful"),
                "frowning": ("frowning", "sad", "unhappy", "grumpy"),
                "neutral": ("neutral", "serious", "expressionless", "calm")}
_SMILE_CLAUSES = {"smiling": ("with a smile", "with a big smile"),
                  "frowning": ("with a frown", "with a sad mouth"),
                  "neutral": ("with a neutral expression", "with a straight mouth")}
_NOUNS = ("face", "face", "face", "person", "cartoon face", "portrait", "character", "head")


def _pick(rng: random.Random, options, first_weight: float = 0.55):
    """The first option with probability ``first_weight``, else a uniform choice among the rest."""
    if len(options) == 1 or rng.random() < first_weight:
        return options[0]
    return rng.choice(options[1:])


def caption(attrs: dict, rng=None) -> str:
    """A varied English caption mentioning some of the visible attributes of one face.

    ``rng``: a ``random.Random``, an int seed, or None (a seed derived from ``attrs``); the caption is
    deterministic given it. Any attribute may be left out, so the captions teach partial descriptions
    ("a face", "smiling face") as well as full ones.
    """
    if not isinstance(attrs, dict):
        raise ValueError("caption: attrs must be one attribute dict (use [caption(a) for a in attrs])")
    if rng is None:
        rng = random.Random(zlib.crc32(json.dumps(attrs, sort_keys=True).encode()))
    elif not isinstance(rng, random.Random):
        rng = random.Random(rng)
    if rng.random() < 0.05:
        return rng.choice(("a face", "face", "a cartoon face", "a portrait", "a person"))
    adjectives, clauses, background = _caption_parts(attrs, rng)
    return _caption_sentence(adjectives, clauses, background, rng)


def _caption_parts(attrs: dict, rng: random.Random) -> tuple[list[str], list[str], str | None]:
    """The words of one caption, each attribute mentioned or not at random: adjectives before the noun,
    clauses after it ("with glasses"), and a background phrase (or None)."""
    label = smile_label(float(attrs["smile"]))
    adjectives, clauses = [], []
    if rng.random() < 0.75:
        if rng.random() < 0.75:
            adjectives.append(_pick(rng, _SMILE_WORDS[label]))
        else:
            clauses.append(rng.choice(_SMILE_CLAUSES[label]))
    if attrs["hair"] == "none":
        if rng.random() < 0.5:
            if rng.random() < 0.6:
                adjectives.append("bald")
            else:
                clauses.append(rng.choice(("with no hair", "without hair")))
    else:
        r = rng.random()
        length, colour = attrs["hair"], attrs["hair_color"]
        if r < 0.3:
            clauses.append(f"with {length} {colour} hair")
        elif r < 0.5:
            clauses.append(f"with {colour} hair")
        elif r < 0.65:
            clauses.append(f"with {length} hair")
    if attrs["glasses"] == "yes":
        if rng.random() < 0.6:
            clauses.append(_pick(rng, ("with glasses", "wearing glasses", "with spectacles"), 0.7))
    elif rng.random() < 0.25:
        clauses.append(_pick(rng, ("without glasses", "with no glasses"), 0.7))
    if rng.random() < 0.45:
        state = attrs["eyes"]
        clauses.append(rng.choice((f"with {state} eyes", f"with eyes {state}")))
    if rng.random() < 0.3:
        clauses.append(f"with {attrs['skin']} skin")
    background = None
    if rng.random() < 0.35:
        colour = attrs["background"]
        background = rng.choice((f"on a {colour} background", f"against a {colour} background",
                                 f"in front of a {colour} background", f"with a {colour} background"))
    return adjectives, clauses, background


def _caption_sentence(adjectives: list[str], clauses: list[str], background: str | None,
                      rng: random.Random) -> str:
    """The parts in a random order, joined into one noun phrase ("a smiling face with glasses and red hair")."""
    rng.shuffle(adjectives)
    rng.shuffle(clauses)
    noun = rng.choice(_NOUNS)
    if noun == "portrait":
        head = "portrait of a " + " ".join(adjectives + ["person"])
    else:
        head = " ".join(adjectives + [noun])
        r = rng.random()
        if r < 0.6:
            head = ("an " if head[0] in "aeiou" else "a ") + head
        elif r < 0.75:
            head = "a drawing of " + ("an " if head[0] in "aeiou" else "a ") + head
    if background is not None:
        clauses.insert(rng.randint(0, len(clauses)), background)
    if not clauses:
        return head
    if len(clauses) == 1:
        return f"{head} {clauses[0]}"
    if rng.random() < 0.5:  # "with red hair and glasses" rather than "with red hair and with glasses"
        clauses = clauses[:1] + [c[5:] if c.startswith("with ") else c for c in clauses[1:]]
    joiner = rng.choice((", ", " "))
    body = joiner.join(clauses[:-1])
    return f"{head} {body} and {clauses[-1]}"


def caption_vocabulary() -> list[str]:
    """Every word the captions (and the standard prompts) can use, for building the toy CLIP tokenizer."""
    words = set()
    phrases = [w for ws in _SMILE_WORDS.values() for w in ws] + [c for cs in _SMILE_CLAUSES.values() for c in cs]
    phrases += list(_NOUNS) + ["a an of drawing person with without no hair bald wearing glasses spectacles"
                               " eyes skin on against in front background and"]
    phrases += [v for k in CATEGORICAL for v in ATTRIBUTES[k]]
    for p in phrases:
        words.update(p.split())
    return sorted(words)


# ----------------------------------------------------------------------------------------------
# Dataset

class ToyFaces(Dataset):
    """``n`` random toy faces (``sample_attributes(n, seed)``), rendered on access.

    Items are dicts with ``"image"`` (3, size, size) in [-1, 1], ``"index"`` and, when
    ``with_captions``, ``"caption"`` (deterministic per index). ``dataset.attrs[i]`` holds the ground truth.
    """

    def __init__(self, n: int, seed: int = 0, size: int = 64, with_captions: bool = True):
        if n < 1:
            raise ValueError(f"n: expected a positive number of faces, got {n}")
        self.attrs = sample_attributes(n, seed)
        self.seed, self.size, self.with_captions = seed, size, with_captions

    def __len__(self) -> int:
        return len(self.attrs)

    def __getitem__(self, i: int) -> dict:
        item = {"image": render(self.attrs[i], self.size)[0], "index": i}
        if self.with_captions:
            item["caption"] = caption(self.attrs[i], random.Random(self.seed * 1_000_003 + i))
        return item


# ----------------------------------------------------------------------------------------------
# Image helpers shared by the training scripts and tests

def gaussian_blur(images: torch.Tensor, sigma) -> torch.Tensor:
    """Blur ``images`` (N, C, H, W) with a Gaussian of std ``sigma`` pixels (a float or one per image)."""
    n, c, h, w = images.shape
    sigma = torch.as_tensor(sigma, dtype=images.dtype, device=images.device).reshape(-1).expand(n)
    sigma = sigma.clamp_min(1e-3)
    radius = int(math.ceil(3.0 * float(sigma.max())))
    radius = max(1, min(radius, (min(h, w) - 1) // 2))
    offs = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    k = torch.exp(-0.5 * (offs[None] / sigma[:, None]) ** 2)
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (N*C, K)
    x = images.reshape(1, n * c, h, w)
    x = torch.nn.functional.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = torch.nn.functional.conv2d(x, k[:, None, None, :], groups=n * c)
    x = torch.nn.functional.conv2d(x, k[:, None, :, None], groups=n * c)
    return x.reshape(n, c, h, w)
