r"""The h-space: the U-Net's bottleneck (the output of its mid block), and the split forward pass.

A diffusers ``UNet2DModel`` computes ε^θ(x_t, t) as

    encoder (conv_in + down blocks) → mid block → h_t → decoder (up blocks, fed by the skip connections).

Asyrp edits h_t only: ε^θ(x_t | Δh_t) is the same network with h_t + Δh_t handed to the decoder, while
every skip connection stays as it was (course eq. 5). ``HSpaceUNet`` exposes the two halves:

- ``encode(x_t, t)`` → ``Encoded`` with ``.h`` (N, C_h, H_h, W_h) and what ``decode`` needs;
- ``decode(encoded, h=None)`` → ε; ``h`` may hold k·N rows (k versions of h for the same inputs); a model
  trained to predict v (:mod:`asyrp_lib.models.unets`) has its output turned into ε here, as its forward does;
- ``eps(x_t, t, delta_h=None)`` → ε, or the pair ``(eps_edited, eps)`` from ONE encoder pass and ONE
  decoder pass over the batch ``[h + Δh ; h]`` (Δh a tensor, or a function of h such as f_t; optionally
  only the first rows edited, as when a reconstruction runs in the same batch).

Speed options (``HSpaceUNet(unet, precision=, channels_last=, compile=)``), all opt-in: ``precision="bf16"``
runs the U-Net's two halves under ``torch.autocast(device_type, dtype=torch.bfloat16)`` while h and ε come
out in the model's dtype (so f_t, the DDIM arithmetic and the losses stay float32); ``channels_last=True``
puts the U-Net's weights (in place: they are the model's own) and its inputs in channels-last memory format;
``compile=True`` (or a backend name) runs the two halves through ``torch.compile`` with a dynamic batch
size, compiled once per process and shared by every wrapper of the same U-Net (the first call of each half
compiles it). Only passes that need no graph are compiled: where a gradient must flow (the decoder while
training f_t or optimising Δh) the half runs uncompiled, because inductor's backward of the decoder gave
wrong gradients in our CPU check (NaN with a dynamic batch, 13 % off with a static one; torch 2.14, while
its forward pass agreed to 1e-6). Inversion, editing and every gradient-free row of training are compiled.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from .._utils import add_shift, check_compile, check_flag, check_precision

__all__ = ["Encoded", "HSpaceUNet", "h_shape"]


@dataclass
class Encoded:
    """The encoder half of a U-Net forward pass."""

    h: torch.Tensor  # the mid-block output h_t
    emb: torch.Tensor  # time embedding, one row per input
    skips: tuple  # skip-connection tensors from the down path, in order
    timesteps: torch.Tensor  # (N,) timesteps used (needed by Fourier-embedding U-Nets)
    x_t: torch.Tensor | None = None  # the input (needed to turn a v-prediction into ε)


class HSpaceUNet(nn.Module):
    """Wraps a ``diffusers.UNet2DModel`` to read and edit its bottleneck h_t.

    ``HSpaceUNet(unet)(x_t, t)`` equals ``unet(x_t, t).sample`` to float rounding. ``precision``
    (``"fp32"``/``"bf16"``), ``channels_last`` and ``compile`` (``False``, ``True`` or a ``torch.compile``
    backend name) are the speed options of the module docstring; all off by default.
    """

    def __init__(self, unet: nn.Module, *, precision: str = "fp32", channels_last: bool = False,
                 compile: bool | str = False):
        super().__init__()
        self.precision = check_precision(precision)
        self.channels_last = check_flag(channels_last, "channels_last")
        self.compile_backend = check_compile(compile)
        if self.compile_backend is True:
            self.compile_backend = "inductor"
        needed = ("conv_in", "down_blocks", "up_blocks", "time_proj", "time_embedding", "conv_out", "config")
        if not all(hasattr(unet, a) for a in needed):
            raise ValueError(f"unet: expected a diffusers UNet2DModel, got {type(unet).__name__}")
        if getattr(unet, "mid_block", None) is None:
            raise ValueError("unet: this UNet2DModel has no mid block (mid_block_type=None), so it has no h-space; "
                             "use a model built with a mid block (the default UNetMidBlock2D)")
        if getattr(unet, "class_embedding", None) is not None:
            raise ValueError("unet: class-conditional UNet2DModels are not supported (class_embed_type must be None)")
        self.unet = unet
        if self.channels_last:
            unet.to(memory_format=torch.channels_last)
        self._encoder = _compiled(_encoder_net, self.compile_backend)
        self._decoder = _compiled(_decoder_net, self.compile_backend)

    # -- properties ------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    def h_shape(self, image_size: int | None = None) -> tuple[int, int, int]:
        """(C, H, W) of h_t for square inputs of ``image_size`` (default: the model's sample_size)."""
        return h_shape(self.unet, image_size)

    def autocast(self):
        """The context the U-Net's halves run in: bfloat16 autocast with ``precision="bf16"``, else none."""
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _needs_graph(self, *inputs: torch.Tensor) -> bool:
        """Whether a pass from ``inputs`` must build an autograd graph (gradients on, and an input or a weight
        needs one)."""
        return torch.is_grad_enabled() and (any(x.requires_grad for x in inputs)
                                            or any(p.requires_grad for p in self.unet.parameters()))

    # -- the two halves --------------------------------------------------------------------
    def _timesteps(self, t, n: int, device) -> torch.Tensor:
        tt = torch.as_tensor(t, device=device)
        if tt.dim() == 0:
            tt = tt.expand(n)
        if tt.shape != (n,):
            raise ValueError(f"t: expected an int or a tensor of shape ({n},), got shape {tuple(tt.shape)}")
        return tt

    def encode(self, x_t: torch.Tensor, t) -> Encoded:
        """Encoder and mid block: returns h_t with the skip connections and time embedding."""
        u = self.unet
        if x_t.dim() != 4 or x_t.shape[1] != u.config.in_channels:
            raise ValueError(f"x_t: expected shape (N, {u.config.in_channels}, H, W), got {tuple(x_t.shape)}")
        tt = self._timesteps(t, x_t.shape[0], x_t.device)
        graph = self._needs_graph(x_t)  # training f_t needs none here: the U-Net is frozen, x_t detached
        with torch.set_grad_enabled(graph), self.autocast():
            h, emb, skips = (_encoder_net if graph else self._encoder)(u, x_t, tt, self.channels_last)
        return Encoded(h=h.to(x_t.dtype), emb=emb, skips=skips, timesteps=tt, x_t=x_t)

    def decode(self, encoded: Encoded, h: torch.Tensor | None = None, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Decoder: ε from h (default ``encoded.h``) and the encoder's skip connections.

        ``h`` may hold several versions of h for the same inputs: with ``rows`` (the index of the input each row
        of ``h`` belongs to) any selection, or, without it, k·N rows (k versions of all N inputs, version-major).
        The skip connections and time embedding follow the rows, so all versions decode as one batch.
        """
        u = self.unet
        n = encoded.h.shape[0]
        if h is None:
            h = encoded.h
        if rows is None:
            if h.dim() != 4 or h.shape[1:] != encoded.h.shape[1:] or h.shape[0] % n:
                raise ValueError(f"h: expected shape (k·{n}, {', '.join(map(str, encoded.h.shape[1:]))}), "
                                 f"got {tuple(h.shape)}")
            rows = torch.arange(n, device=h.device).repeat(h.shape[0] // n)
        elif h.dim() != 4 or h.shape[1:] != encoded.h.shape[1:] or rows.shape != (h.shape[0],):
            raise ValueError(f"h, rows: expected h of shape (M, {', '.join(map(str, encoded.h.shape[1:]))}) and "
                             f"rows of shape (M,), got {tuple(h.shape)} and {tuple(rows.shape)}")
        pick = (lambda z: z) if rows.numel() == n and bool((rows == torch.arange(n, device=rows.device)).all()) \
            else (lambda z: z[rows.to(z.device)])
        emb, tt = pick(encoded.emb), pick(encoded.timesteps)
        skips = tuple(pick(s) for s in encoded.skips)
        graph = self._needs_graph(h, emb, *skips)
        with torch.set_grad_enabled(graph), self.autocast():
            sample = (_decoder_net if graph else self._decoder)(u, h, skips, emb, self.channels_last)
        sample = sample.to(h.dtype)
        if u.config.time_embedding_type == "fourier":
            sample = sample / tt.reshape(-1, 1, 1, 1)
        if hasattr(u, "output_to_eps"):  # a model trained to predict v (asyrp_lib.models.unets): return ε
            if encoded.x_t is None:
                raise ValueError("encoded: this model predicts v, so decode needs encoded.x_t (use encode())")
            sample = u.output_to_eps(sample, pick(encoded.x_t), tt)
        return sample

    # -- ε with and without an edit --------------------------------------------------------
    def eps(self, x_t: torch.Tensor, t, delta_h=None, *, edit_rows: int | None = None):
        """ε^θ(x_t, t); with ``delta_h`` the pair ``(ε(x_t | h + Δh), ε(x_t))`` from one shared encoder pass.

        ``delta_h``: a tensor broadcastable to h of the edited rows, or a callable ``(h, t) -> Δh`` given those
        rows' h (f_t, a sum of directions, …). ``edit_rows``: only the first ``edit_rows`` inputs get an edited
        version (default: all); ε is returned for every input. One decoder pass runs over ``[h + Δh ; h]``;
        when Δh carries a graph (training f_t), the unedited rows decode in a second pass without one, so that
        only the edited rows' activations are kept for the backward pass.
        """
        enc = self.encode(x_t, t)
        if delta_h is None:
            return self.decode(enc)
        h = enc.h
        m = h.shape[0] if edit_rows is None else int(edit_rows)
        if not 0 < m <= h.shape[0]:
            raise ValueError(f"edit_rows: expected an integer in [1, {h.shape[0]}], got {edit_rows!r}")
        shift = delta_h(h[:m], enc.timesteps[:m]) if callable(delta_h) else delta_h
        h_edit = add_shift(h[:m], shift, "delta_h")
        if torch.is_grad_enabled() and h_edit.requires_grad:
            eps_edit = self.decode(enc, h_edit, rows=torch.arange(m, device=h.device))
            with torch.no_grad():
                return eps_edit, self.decode(enc)
        rows = torch.cat([torch.arange(m), torch.arange(h.shape[0])]).to(h.device)
        both = self.decode(enc, torch.cat([h_edit, h]), rows=rows)
        return both[:m], both[m:]

    def forward(self, x_t: torch.Tensor, t) -> torch.Tensor:
        return self.decode(self.encode(x_t, t))


# --------------------------------------------------------------------------------------------
# The network halves (plain functions of the U-Net, so that torch.compile shares them between wrappers)
# --------------------------------------------------------------------------------------------
def _encoder_net(u: nn.Module, x_t: torch.Tensor, tt: torch.Tensor, channels_last: bool):
    """Time embedding, conv_in, down blocks and mid block: (h, emb, skip connections)."""
    sample = 2 * x_t - 1.0 if u.config.center_input_sample else x_t
    if channels_last:
        sample = sample.contiguous(memory_format=torch.channels_last)
    emb = u.time_embedding(u.time_proj(tt).to(dtype=u.dtype))
    skip_sample = sample
    sample = u.conv_in(sample)
    skips = (sample,)
    for block in u.down_blocks:
        if hasattr(block, "skip_conv"):
            sample, res, skip_sample = block(hidden_states=sample, temb=emb, skip_sample=skip_sample)
        else:
            sample, res = block(hidden_states=sample, temb=emb)
        skips += res
    return u.mid_block(sample, emb), emb, skips


def _decoder_net(u: nn.Module, h: torch.Tensor, skips: tuple, emb: torch.Tensor, channels_last: bool):
    """Up blocks fed by the skip connections, then the output layers: the network's raw output."""
    sample = h.contiguous(memory_format=torch.channels_last) if channels_last else h
    skip_sample = None
    for block in u.up_blocks:
        res = skips[-len(block.resnets):]
        skips = skips[: -len(block.resnets)]
        if hasattr(block, "skip_conv"):
            sample, skip_sample = block(sample, res, emb, skip_sample)
        else:
            sample = block(sample, res, emb)
    sample = u.conv_out(u.conv_act(u.conv_norm_out(sample)))
    if skip_sample is not None:
        sample = sample + skip_sample
    return sample


_COMPILED: dict = {}


def _compiled(fn, backend):
    """``fn`` itself (``backend`` False), or its ``torch.compile`` with that backend, made once per process,
    with the batch dimension of its tensors dynamic (N, 2N and 3N rows share one graph; the image size and
    the channels stay static, as inductor needs them)."""
    if not backend:
        return fn
    key = (fn.__name__, backend)
    if key not in _COMPILED:
        compiled = torch.compile(fn, backend=backend)

        def run(u, *args):
            for a in args:
                for x in (a if isinstance(a, tuple) else (a,)):
                    if isinstance(x, torch.Tensor):
                        torch._dynamo.maybe_mark_dynamic(x, 0)
            return compiled(u, *args)

        _COMPILED[key] = run
    return _COMPILED[key]


def h_shape(unet: nn.Module, image_size: int | None = None) -> tuple[int, int, int]:
    """(C, H, W) of the bottleneck h for square inputs (default size: the model's ``sample_size``)."""
    cfg = unet.config
    size = image_size or (cfg.sample_size if isinstance(cfg.sample_size, int) else cfg.sample_size[0])
    for block in unet.down_blocks:  # every downsampler halves the side (diffusers pads odd sides up)
        if getattr(block, "downsamplers", None) is not None:
            size = (size + 1) // 2
    return (unet.mid_block.resnets[-1].out_channels, size, size)
