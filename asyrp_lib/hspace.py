r"""The h-space: the U-Net's bottleneck (the output of its mid block), and the split forward pass.

A diffusers ``UNet2DModel`` computes ε^θ(x_t, t) as

    encoder (conv_in + down blocks) → mid block → h_t → decoder (up blocks, fed by the skip connections).

Asyrp edits h_t only: ε^θ(x_t | Δh_t) is the same network with h_t + Δh_t handed to the decoder, while
every skip connection stays as it was (course eq. 5). ``HSpaceUNet`` exposes the two halves:

- ``encode(x_t, t)`` → ``Encoded`` with ``.h`` (N, C_h, H_h, W_h) and what ``decode`` needs;
- ``decode(encoded, h=None)`` → ε; ``h`` may hold k·N rows (k versions of h for the same inputs); a model
  trained to predict v (:mod:`asyrp_lib.unets`) has its output turned into ε here, as its forward does;
- ``eps(x_t, t, delta_h=None)`` → ε, or the pair ``(eps_edited, eps)`` from ONE encoder pass and ONE
  decoder pass over the batch ``[h + Δh ; h]`` (Δh a tensor, or a function of h such as f_t; optionally
  only the first rows edited, as when a reconstruction runs in the same batch).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ._utils import add_shift

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

    ``HSpaceUNet(unet)(x_t, t)`` equals ``unet(x_t, t).sample`` to float rounding.
    """

    def __init__(self, unet: nn.Module):
        super().__init__()
        needed = ("conv_in", "down_blocks", "up_blocks", "time_proj", "time_embedding", "conv_out", "config")
        if not all(hasattr(unet, a) for a in needed):
            raise ValueError(f"unet: expected a diffusers UNet2DModel, got {type(unet).__name__}")
        if getattr(unet, "mid_block", None) is None:
            raise ValueError("unet: this UNet2DModel has no mid block (mid_block_type=None), so it has no h-space; "
                             "use a model built with a mid block (the default UNetMidBlock2D)")
        if getattr(unet, "class_embedding", None) is not None:
            raise ValueError("unet: class-conditional UNet2DModels are not supported (class_embed_type must be None)")
        self.unet = unet

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
        sample = 2 * x_t - 1.0 if u.config.center_input_sample else x_t
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
        h = u.mid_block(sample, emb)
        return Encoded(h=h, emb=emb, skips=skips, timesteps=tt, x_t=x_t)

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
        sample = h
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
        if u.config.time_embedding_type == "fourier":
            sample = sample / tt.reshape(-1, 1, 1, 1)
        if hasattr(u, "output_to_eps"):  # a model trained to predict v (asyrp_lib.unets): return ε
            if encoded.x_t is None:
                raise ValueError("encoded: this model predicts v, so decode needs encoded.x_t (use encode())")
            sample = u.output_to_eps(sample, pick(encoded.x_t), tt)
        return sample

    # -- ε with and without an edit --------------------------------------------------------
    def eps(self, x_t: torch.Tensor, t, delta_h=None, *, edit_rows: int | None = None):
        """ε^θ(x_t, t); with ``delta_h`` the pair ``(ε(x_t | h + Δh), ε(x_t))`` from one shared encoder pass.

        ``delta_h``: a tensor broadcastable to h of the edited rows, or a callable ``(h, t) -> Δh`` given those
        rows' h (f_t, a sum of directions, …). ``edit_rows``: only the first ``edit_rows`` inputs get an edited
        version (default: all); ε is returned for every input. One decoder pass runs over ``[h + Δh ; h]``.
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
        rows = torch.cat([torch.arange(m), torch.arange(h.shape[0])]).to(h.device)
        both = self.decode(enc, torch.cat([h_edit, h]), rows=rows)
        return both[:m], both[m:]

    def forward(self, x_t: torch.Tensor, t) -> torch.Tensor:
        return self.decode(self.encode(x_t, t))


def h_shape(unet: nn.Module, image_size: int | None = None) -> tuple[int, int, int]:
    """(C, H, W) of the bottleneck h for square inputs (default size: the model's ``sample_size``)."""
    cfg = unet.config
    size = image_size or (cfg.sample_size if isinstance(cfg.sample_size, int) else cfg.sample_size[0])
    for block in unet.down_blocks:  # every downsampler halves the side (diffusers pads odd sides up)
        if getattr(block, "downsamplers", None) is not None:
            size = (size + 1) // 2
    return (unet.mid_block.resnets[-1].out_channels, size, size)
