"""Small shared helpers: the one validator of each kind of input at the library's boundary, progress bars.

Every module checks timesteps, prompts, devices and numeric settings with these functions, so a bad value
gets the same clear message wherever it enters.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from tqdm.auto import tqdm


def check_images(x, name: str, *, value_range: tuple[float, float] | None = (-1.0, 1.0), tol: float = 1e-3,
                 channels: int | None = None) -> torch.Tensor:
    """Raise a ValueError naming ``name`` unless ``x`` is a float tensor (N, C, H, W) within ``value_range``."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor of shape (N, C, H, W), got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{name}: expected shape (N, C, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point tensor, got {x.dtype}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{name}: expected {channels} channels, got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    if value_range is not None and x.numel():
        lo, hi = value_range
        mn, mx = float(x.min()), float(x.max())
        if mn < lo - tol or mx > hi + tol:
            raise ValueError(f"{name}: expected values in [{lo:g}, {hi:g}] (images scaled to [-1, 1]), "
                             f"got min {mn:.3f}, max {mx:.3f}")
    return x


def progress_bar(iterable, *, enabled: bool = True, desc: str | None = None, total: int | None = None, **kw):
    """A tqdm bar (notebook-aware) or the plain iterable when ``enabled`` is False."""
    if not enabled:
        return iterable
    return tqdm(iterable, desc=desc, total=total, leave=False, **kw)


def data_dir() -> Path:
    """The folder of shipped weights: ``$ASYRP_DATA`` if set, else the repository's ``data/``."""
    return Path(os.environ.get("ASYRP_DATA") or Path(__file__).resolve().parent.parent / "data")


def add_shift(base: torch.Tensor, shift: torch.Tensor, name: str) -> torch.Tensor:
    """``base + shift`` where ``shift`` must broadcast to ``base``'s shape; else a ValueError naming ``name``."""
    def fail():
        return ValueError(f"{name}: expected a tensor broadcastable to {tuple(base.shape)}, "
                          f"got {tuple(getattr(shift, 'shape', ()))}")
    try:
        out = base + shift.to(dtype=base.dtype)
    except (RuntimeError, AttributeError):
        raise fail() from None
    if out.shape != base.shape:
        raise fail()
    return out


# --------------------------------------------------------------------------------------------
# Validators: one for each kind of input
# --------------------------------------------------------------------------------------------
def check_timestep(value, name: str, num_train_timesteps: int) -> int:
    """An integer timestep in [0, T-1] (T: the schedule's ``num_train_timesteps``), or a ``ValueError`` naming ``name``."""
    T = int(num_train_timesteps)
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point():
        value = int(value)
    ok = not isinstance(value, bool) and (isinstance(value, int) or (isinstance(value, float) and value.is_integer()))
    if not ok or not 0 <= int(value) <= T - 1:
        raise ValueError(f"{name}: expected an integer timestep in [0, {T - 1}], got {value!r}")
    return int(value)


def check_prompt(text, name: str) -> str:
    """A non-empty prompt string, or a ``ValueError`` naming ``name``."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{name}: expected a non-empty prompt such as 'face' or 'smiling face', got {text!r}")
    return text


def check_prompts(texts, name: str = "texts") -> list[str]:
    """A non-empty list of prompts (one string is a list of one), each checked by ``check_prompt``."""
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, (list, tuple)) or not texts:
        raise ValueError(f"{name} must be a non-empty list of strings, got {texts!r}")
    return [check_prompt(t, f"{name}[{i}]" if len(texts) > 1 else name) for i, t in enumerate(texts)]


def check_prompt_pair(source, target, names: tuple[str, str] = ("source", "target")) -> tuple[str, str]:
    """Two non-empty, different prompts (compared without case and surrounding spaces)."""
    check_prompt(source, names[0])
    check_prompt(target, names[1])
    if source.strip().lower() == target.strip().lower():
        raise ValueError(f"{names[0]}, {names[1]}: the prompts are identical ({source!r}); the edit direction is "
                         "undefined — give two different descriptions")
    return source, target


def check_int(value, name: str, minimum: int = 1) -> int:
    """An integer ≥ ``minimum`` (not a bool), or a ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer ≥ {minimum}"
        raise ValueError(f"{name}: expected {what}, got {value!r}")
    return value


def check_number(value, name: str, *, positive: bool = False) -> float:
    """A finite number ≥ 0 (> 0 with ``positive``), or a ``ValueError`` naming ``name``."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value \
        and abs(value) != float("inf") and (value > 0 if positive else value >= 0)
    if not ok:
        raise ValueError(f"{name}: expected a finite number {'> 0' if positive else '≥ 0'}, got {value!r}")
    return float(value)


def check_share(value, name: str) -> float:
    """A number in [0, 1) (not a bool, not NaN), or a ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{name}: expected a share in [0, 1), got {value!r}")
    return float(value)


#: The arithmetic precisions of the U-Net: "fp32" (the default), or "bf16" (autocast to bfloat16; h, ε and
#: everything outside the U-Net stay float32).
PRECISIONS = ("fp32", "bf16")


def check_precision(value, name: str = "precision") -> str:
    """One of :data:`PRECISIONS`, or a ``ValueError`` naming ``name``."""
    if not isinstance(value, str) or value not in PRECISIONS:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, PRECISIONS))}, got {value!r}")
    return value


def check_flag(value, name: str) -> bool:
    """A bool (not 0/1 or a string), or a ``ValueError`` naming ``name``."""
    if value is True or value is False:
        return value
    raise ValueError(f"{name}: expected True or False, got {value!r}")


def check_compile(value, name: str = "compile") -> bool | str:
    """``False`` (no ``torch.compile``), ``True`` (its default backend, inductor) or the name of a
    ``torch.compile`` backend (``"inductor"``, ``"eager"``, …), or a ``ValueError`` naming ``name``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value:
        from torch import _dynamo

        known = _dynamo.list_backends(exclude_tags=())
        if value in known:
            return value
    raise ValueError(f"{name}: expected True, False or a torch.compile backend name ('inductor', 'eager', …), "
                     f"got {value!r}")


def resolve_device(device=None) -> torch.device:
    """``None`` → CUDA if available, else CPU; strings like ``"cuda"``/``"cpu"`` are checked."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device: expected 'cpu', 'cuda', 'cuda:N' or a torch.device, got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: 'cuda' was asked for but no CUDA GPU is available here; use device='cpu'")
    return dev


def grouped_options(where: str, keywords: dict, groups: dict, *, also=()) -> dict:
    """Settings given one by one as keywords, placed into the objects they belong to.

    ``groups``: {name: (dataclass type, the object given or ``None``)}; each keyword that names a field of one of
    these dataclasses replaces that field (``t_edit=300`` → ``Phases.t_edit``). ``also``: other keywords the caller
    accepts by name; they come back under their own name. Returns {name: object} for every group plus those keywords;
    any other keyword raises ``TypeError`` naming ``where``, as a function's own signature would."""
    from dataclasses import fields, replace

    known = {name: {f.name for f in fields(cls)} for name, (cls, _) in groups.items()}
    allowed = set(also).union(*known.values())
    unknown = sorted(set(keywords) - allowed)
    if unknown:
        names = ", ".join(cls.__name__ for cls, _ in groups.values())
        raise TypeError(f"{where}() got unexpected keyword argument(s) {', '.join(unknown)}; the fields of {names} "
                        f"may be given by name" + (f", and {', '.join(sorted(also))}" if also else ""))
    out = {}
    for name, (cls, given) in groups.items():
        mine = {k: v for k, v in keywords.items() if k in known[name] and k not in also}
        obj = given if given is not None else cls()
        if not isinstance(obj, cls):
            raise TypeError(f"{where}(): {name} must be a {cls.__name__}, got {type(obj).__name__}")
        out[name] = replace(obj, **mine) if mine else obj
    out.update({k: v for k, v in keywords.items() if k in also})
    return out
