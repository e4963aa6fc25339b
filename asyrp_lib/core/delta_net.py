r"""f_t: the small network that turns the bottleneck h_t into an edit Δh_t (Asyrp §3.2, course eq. 5).

    Δh_t = f_t(h_t, t) = W_2 · SiLU(GN(W_1 · h_t + P · emb(t)))

=====================  ===============  =============================================================
name here              symbol           what
=====================  ===============  =============================================================
``DeltaNet``           f_t              the network; ``net(h, t)`` → Δh_t, same shape as h_t
``conv_in``            W_1              1×1 convolution C → hidden
``time_proj``          P                linear projection of the sinusoidal time embedding emb(t)
``norm``               GN               GroupNorm over the hidden channels (≥ 4 channels per group, so
                                        the time offset P·emb(t) is not normalised away)
``conv_out``           W_2              1×1 convolution hidden → C, **zero-initialised**: f_t starts at Δh = 0
=====================  ===============  =============================================================

One network serves every timestep (t enters through emb(t)), as in the reference implementation.
A trained direction is a folder: ``delta_net.safetensors`` (the weights) and ``delta_net.json`` (what it
was made for: model id, h shape, prompts, t_edit, t_boost, DDIM steps, training settings, library
version). :meth:`DeltaNet.load` refuses a checkpoint made for another h shape, and (unless told to allow
it) for another diffusion model.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch
from torch import nn

__all__ = ["DeltaNet", "timestep_embedding", "WEIGHTS_NAME", "META_NAME", "directions_dir", "shipped_directions"]

WEIGHTS_NAME = "delta_net.safetensors"
META_NAME = "delta_net.json"


def directions_dir() -> Path:
    """Where the shipped directions live: ``data/directions/`` (one folder per direction)."""
    from .._utils import data_dir

    return data_dir() / "directions"


def shipped_directions() -> dict[str, Path]:
    """The shipped directions, name → folder (``data/directions/<name>/`` holding a checkpoint), by name. The one
    lookup of the shipped directions: the command line and the widgets both ask it."""
    root = directions_dir()
    if not root.is_dir():
        return {}
    return {d.name: d for d in sorted(root.iterdir()) if (d / META_NAME).is_file()}


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """emb(t) = [cos(t ω_k), sin(t ω_k)], ω_k = max_period^(-k / (dim/2)): the transformer/DDPM sinusoid, ``(N, dim)``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return nn.functional.pad(emb, (0, dim % 2))


def _groups(channels: int, wanted: int = 32, min_group: int = 4) -> int:
    """The largest divisor of ``channels`` that is ≤ ``wanted`` and leaves ≥ ``min_group`` channels per group.

    A group of one channel would normalise away the per-channel time offset P·emb(t) entirely.
    """
    for g in range(min(wanted, max(1, channels // min_group)), 0, -1):
        if channels % g == 0:
            return g
    return 1


def _shape_str(shape) -> str:
    return "×".join(str(int(s)) for s in shape)


class DeltaNet(nn.Module):
    """f_t(h_t, t) → Δh_t for bottlenecks of shape ``h_shape = (C, H, W)``.

    ``hidden``: width of the hidden layer (default C, as in the reference implementation); ``time_dim``:
    size of the sinusoidal embedding of t; ``metadata``: what the network was made for (see the module
    docstring), kept with it and written by :meth:`save`.
    """

    def __init__(self, h_shape, *, hidden: int | None = None, time_dim: int = 128, metadata: dict | None = None):
        super().__init__()
        try:
            h_shape = tuple(int(s) for s in h_shape)
        except (TypeError, ValueError):
            raise ValueError(f"h_shape: expected (C, H, W), got {h_shape!r}") from None
        if len(h_shape) != 3 or min(h_shape) < 1:
            raise ValueError(f"h_shape: expected three positive sizes (C, H, W), got {h_shape}")
        channels = h_shape[0]
        hidden = int(hidden or channels)
        if hidden < 1 or time_dim < 2:
            raise ValueError(f"hidden, time_dim: expected hidden ≥ 1 and time_dim ≥ 2, got {hidden}, {time_dim}")
        self.h_shape = h_shape
        self.hidden, self.time_dim = hidden, int(time_dim)
        self.conv_in = nn.Conv2d(channels, hidden, kernel_size=1)
        self.time_proj = nn.Linear(self.time_dim, hidden)
        self.norm = nn.GroupNorm(_groups(hidden), hidden)
        self.act = nn.SiLU()
        self.conv_out = nn.Conv2d(hidden, channels, kernel_size=1)
        nn.init.zeros_(self.conv_out.weight)  # training starts from "no edit": Δh = 0
        nn.init.zeros_(self.conv_out.bias)
        self.metadata: dict = dict(metadata or {})

    @property
    def device(self) -> torch.device:
        return self.conv_in.weight.device

    def forward(self, h: torch.Tensor, t) -> torch.Tensor:
        """Δh_t = W_2 SiLU(GN(W_1 h_t + P emb(t))) for h of shape (N, C, H, W) and t an int or (N,) tensor."""
        if not isinstance(h, torch.Tensor) or h.dim() != 4 or tuple(h.shape[1:]) != self.h_shape:
            got = tuple(h.shape) if isinstance(h, torch.Tensor) else type(h).__name__
            raise ValueError(f"h: this DeltaNet was made for h of shape (N, {', '.join(map(str, self.h_shape))}), "
                             f"got {got}")
        tt = torch.as_tensor(t, device=h.device)
        if tt.dim() == 0:
            tt = tt.expand(h.shape[0])
        emb = self.time_proj(timestep_embedding(tt, self.time_dim).to(h.dtype))
        z = self.conv_in(h) + emb[:, :, None, None]
        return self.conv_out(self.act(self.norm(z)))

    def scaled(self, factor: float) -> "DeltaNet":
        """A copy whose output is ``factor`` × this one's: W_2 and its bias multiplied by ``factor`` (f_t ends in
        that linear layer), so strength 1 of the copy edits as strength ``factor`` of this network. The metadata
        is copied and records the factor (``strength_factor``, multiplied with any earlier one)."""
        import copy

        factor = float(factor)
        if not math.isfinite(factor):
            raise ValueError(f"factor: expected a finite number, got {factor!r}")
        net = copy.deepcopy(self)
        with torch.no_grad():
            net.conv_out.weight.mul_(factor)
            net.conv_out.bias.mul_(factor)
        net.metadata["strength_factor"] = float(self.metadata.get("strength_factor", 1.0)) * factor
        return net

    # -- checkpoints ----------------------------------------------------------------------------
    def architecture(self) -> dict:
        return {"h_shape": list(self.h_shape), "hidden": self.hidden, "time_dim": self.time_dim}

    def save(self, folder, **metadata) -> Path:
        """Write ``delta_net.safetensors`` + ``delta_net.json`` into ``folder`` (atomically); ``metadata`` is
        merged into :attr:`metadata` first. Returns the folder."""
        from safetensors.torch import save_file

        from .. import __version__

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.metadata.update(metadata)
        meta = {**self.metadata, **self.architecture(), "library_version": __version__}
        state = {k: v.detach().to("cpu").contiguous() for k, v in self.state_dict().items()}
        tmp_w, tmp_m = folder / (WEIGHTS_NAME + ".tmp"), folder / (META_NAME + ".tmp")
        save_file(state, str(tmp_w), metadata={"format": "pt"})
        tmp_m.write_text(json.dumps(meta, indent=2, default=_json_default))
        os.replace(tmp_w, folder / WEIGHTS_NAME)
        os.replace(tmp_m, folder / META_NAME)
        return folder

    @staticmethod
    def read_metadata(path) -> dict:
        """The JSON metadata of a checkpoint folder (or of the folder holding ``delta_net.safetensors``)."""
        folder = _checkpoint_folder(path)
        try:
            return json.loads((folder / META_NAME).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{folder / META_NAME}: cannot read the checkpoint metadata ({exc})") from None

    @classmethod
    def load(cls, path, *, h_shape=None, model_id: str | None = None, allow_other_model: bool = False,
             device=None) -> "DeltaNet":
        """Load a checkpoint folder written by :meth:`save`.

        ``h_shape``: the (C, H, W) it must fit (a ``ValueError`` otherwise, saying what it was made for);
        ``model_id``: the diffusion model it will be used with — another model is a ``ValueError`` unless
        ``allow_other_model=True`` (an h-space edit rarely transfers between models).
        """
        from safetensors.torch import load_file

        folder = _checkpoint_folder(path)
        meta = cls.read_metadata(folder)
        try:
            net = cls(meta["h_shape"], hidden=meta.get("hidden"), time_dim=meta.get("time_dim", 128),
                      metadata={k: v for k, v in meta.items() if k not in ("h_shape", "hidden", "time_dim")})
        except (KeyError, ValueError) as exc:
            raise ValueError(f"{folder / META_NAME}: not a DeltaNet checkpoint ({exc})") from None
        made_for = (f"it was made for model {meta.get('model_id', '?')!r} with h of shape "
                    f"{_shape_str(net.h_shape)}")
        if h_shape is not None and tuple(int(s) for s in h_shape) != net.h_shape:
            raise ValueError(f"direction {str(folder)!r} does not fit: {made_for}, but this model's h has shape "
                             f"{_shape_str(h_shape)} (another model or image size). Train a direction for this "
                             f"model (asyrp train) or use the profile it was made for.")
        if (model_id is not None and meta.get("model_id") not in (None, model_id) and not allow_other_model):
            raise ValueError(f"direction {str(folder)!r} was trained on another model: {made_for}, but the model "
                             f"in use is {model_id!r}. Pass allow_other_model=True to use it anyway.")
        try:
            state = load_file(str(folder / WEIGHTS_NAME))
            net.load_state_dict(state)
        except Exception as exc:  # a truncated file, other tensor names or shapes
            raise ValueError(f"{folder / WEIGHTS_NAME}: cannot load the weights ({exc})") from None
        net.eval()
        if device is not None:
            net.to(device)
        return net

    def extra_repr(self) -> str:
        return f"h_shape={_shape_str(self.h_shape)}, hidden={self.hidden}, time_dim={self.time_dim}"


def _checkpoint_folder(path) -> Path:
    p = Path(path).expanduser()
    if p.is_file() and p.name in (WEIGHTS_NAME, META_NAME):
        p = p.parent
    if not (p / WEIGHTS_NAME).is_file() or not (p / META_NAME).is_file():
        raise ValueError(f"{str(path)!r}: not a direction checkpoint (expected a folder with {WEIGHTS_NAME} and "
                         f"{META_NAME}, as written by DeltaNet.save or asyrp train)")
    return p


def _json_default(obj):
    if isinstance(obj, (Path, torch.device, torch.dtype)):
        return str(obj)
    if isinstance(obj, torch.Tensor) and obj.numel() == 1:
        return obj.item()
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")
