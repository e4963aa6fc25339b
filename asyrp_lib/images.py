"""Image files in and out: any PIL-readable file → a tensor (N, 3, S, S) in [-1, 1], and back to PNG.

Loading accepts any size and mode: EXIF orientation is applied, RGBA/LA/palette-with-transparency
images are composited on white, grayscale and other modes are converted to RGB, and a non-square or
other-sized image is centre-cropped to a square and resized (bicubic, antialiased) to ``size``. Each
conversion is reported in one line on stderr, with a warning in the same line where the result will be
poor: an image much smaller than ``size`` (upsampled more than :data:`SMALL_FACTOR` times: blurry) or very
elongated (longer side over :data:`ELONGATED_RATIO` times the shorter: the centre crop keeps little of it,
and a face model expects a face filling a square). Unreadable files are a ``ValueError`` naming the file;
:func:`load_upload` does the same for the bytes of an upload widget.
"""
from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["IMAGE_EXTENSIONS", "load_image", "load_images", "load_upload", "list_images", "image_files",
           "save_images", "SMALL_FACTOR", "ELONGATED_RATIO"]

#: File endings treated as images when a folder is read.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")

#: An image whose shorter side must be upsampled more than this factor to reach ``size`` gets a warning note.
SMALL_FACTOR = 2.0
#: An image whose longer side exceeds this multiple of its shorter side gets a warning note.
ELONGATED_RATIO = 2.0

_READ_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def _note(msg: str, verbose: bool) -> None:
    if verbose:
        print(f"[asyrp_lib.images] {msg}", file=sys.stderr)


def _check_size(size) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size: expected a positive integer (the side of the square images), got {size!r}")
    return size


def _open(im: Image.Image) -> tuple[Image.Image, str, bool]:
    """Fully read ``im``, apply its EXIF orientation: (image, original mode, whether it was rotated)."""
    im.load()
    img = ImageOps.exif_transpose(im)
    rotated = img.size != im.size or im.getexif().get(0x0112, 1) not in (1, None)
    return img, im.mode, rotated


def _to_tensor(img: Image.Image, mode: str, rotated: bool, size: int, label: str, verbose: bool) -> torch.Tensor:
    """An opened image → ``(1, 3, size, size)`` in [-1, 1]: RGB, centre-cropped, resized; notes on stderr."""
    notes = []
    if rotated:
        notes.append("rotated by its EXIF orientation")
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba).convert("RGB")
        notes.append(f"{mode} composited on white")
    elif img.mode != "RGB":
        img = img.convert("RGB")
        notes.append(f"{mode} converted to RGB")
    w, h = img.size
    if (w, h) != (size, size):
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        img = img.crop((left, top, left + side, top + side))
        if side != size:
            img = img.resize((size, size), Image.BICUBIC, reducing_gap=None)
        notes.append(f"{w}×{h} centre-cropped and resized to {size}×{size}" if w != h
                     else f"{w}×{h} resized to {size}×{size}")
        if max(w, h) > ELONGATED_RATIO * side:
            notes.append(f"warning: very elongated ({max(w, h) / side:.1f}:1), the square centre crop keeps only "
                         f"{100 * side / max(w, h):.0f} % of it; crop the face to a square yourself for a better edit")
        if size > SMALL_FACTOR * side:
            notes.append(f"warning: very small ({side} px on its shorter side, upsampled {size / side:.1f}×), the "
                         f"result will be blurry; use an image of at least {size}×{size} px")
    if notes:
        _note(f"{label}: " + "; ".join(notes), verbose)
    arr = np.asarray(img, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).contiguous()


def load_image(path, size: int, *, verbose: bool = True) -> torch.Tensor:
    """One image file → ``(1, 3, size, size)`` float32 in [-1, 1] (converted, centre-cropped, resized)."""
    size = _check_size(size)
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such image file")
    try:
        with Image.open(path) as im:
            img, mode, rotated = _open(im)
    except _READ_ERRORS as exc:
        raise ValueError(f"{path}: not a readable image file ({exc.__class__.__name__}: {exc})") from None
    return _to_tensor(img, mode, rotated, size, path.name, verbose)


def load_upload(data: bytes, size: int, name: str = "upload", *, verbose: bool = True) -> torch.Tensor:
    """The bytes of an uploaded file (e.g. an ipywidgets ``FileUpload``'s content) → ``(1, 3, size, size)``
    float32 in [-1, 1]: any size or mode, converted and centre-cropped to a square with a note, as
    :func:`load_image`. ``name`` (the file's name) is used in notes and errors. Bytes that are not an image
    are a ``ValueError`` naming ``data`` and ``name``."""
    size = _check_size(size)
    if isinstance(data, (memoryview, bytearray)):  # ipywidgets 8 gives a memoryview
        data = bytes(data)
    if not isinstance(data, bytes):
        hint = (" (for an ipywidgets FileUpload, pass one file's content: upload.value[0]['content'] in "
                "ipywidgets 8, next(iter(upload.value.values()))['content'] in 7)"
                if isinstance(data, (dict, tuple, list)) else "")
        raise ValueError(f"data: expected the bytes of an image file, got {type(data).__name__}{hint}")
    if not data:
        raise ValueError(f"data: {name!r} is empty (0 bytes); upload a PNG or JPEG image")
    try:
        with Image.open(io.BytesIO(data)) as im:
            img, mode, rotated = _open(im)
    except _READ_ERRORS as exc:
        raise ValueError(f"data: {name!r} is not an image file that can be read ({exc.__class__.__name__}: "
                         f"{exc}); upload a PNG or JPEG image") from None
    return _to_tensor(img, mode, rotated, size, name, verbose)


def list_images(folder) -> list[Path]:
    """The image files (by extension, sorted by name) directly inside ``folder``."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def image_files(path_or_folder) -> list[Path]:
    """The image files that :func:`load_images` reads: the file itself, or the images directly inside the
    folder (by extension, sorted by name). A missing path or a folder without images is a ``ValueError``."""
    p = Path(path_or_folder).expanduser()
    if p.is_dir():
        files = list_images(p)
        if not files:
            raise ValueError(f"{p}: no image files found (looked for {', '.join(IMAGE_EXTENSIONS)})")
        return files
    if p.is_file():
        return [p]
    raise ValueError(f"{p}: no such file or folder")


def load_images(path_or_folder, size: int, *, verbose: bool = True) -> tuple[torch.Tensor, list[str]]:
    """A file or a folder of images → ``(images (N, 3, size, size) in [-1, 1], file names)``.

    A folder is read non-recursively, files with an image extension only, sorted by name; an empty
    folder or a missing path is a ``ValueError``. (To go through a large folder a few images at a time,
    take :func:`image_files` and :func:`load_image` them in chunks, as ``asyrp edit`` does.)
    """
    size = _check_size(size)
    files = image_files(path_or_folder)
    images = torch.cat([load_image(f, size, verbose=verbose) for f in files])
    return images, [f.name for f in files]


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) in [-1, 1] → (N, H, W, 3) uint8 (values outside [-1, 1] are clipped)."""
    x = images.detach().float().cpu().clamp(-1, 1)
    return ((x + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """(N, 3, H, W) in [-1, 1] → N PIL images."""
    return [Image.fromarray(a) for a in to_uint8(images)]


def save_images(images: torch.Tensor, folder, names: Sequence[str]) -> list[Path]:
    """Write each image of ``(N, 3, H, W)`` in [-1, 1] (clipped) as a PNG in ``folder`` under ``names[i]``
    (the extension is replaced by ``.png``). Returns the paths written."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images: expected a tensor (N, 3, H, W), got "
                         f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}")
    names = list(names)
    if len(names) != images.shape[0]:
        raise ValueError(f"names: expected {images.shape[0]} names (one per image), got {len(names)}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for img, name in zip(to_pil(images), names):
        path = folder / (Path(name).stem + ".png")
        img.save(path)
        paths.append(path)
    return paths
