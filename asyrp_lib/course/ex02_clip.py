r"""Checks of notebook 02 (CLIP): the directional CLIP loss (eq. 3).

=======  ====================================================================  =======================================
exercise  the student writes                                                    the library's version
=======  ====================================================================  =======================================
02.1      ``directional_clip_loss(img_edit, img_source, txt_target, txt_source)``  :func:`asyrp_lib.core.clip_loss.directional_clip_loss`
          → ``1 − cos(ΔI, ΔT)`` per image, ``(N,)``
=======  ====================================================================  =======================================

The inputs are random unit embeddings (no CLIP model is needed): images ``(N, D)``, texts ``(D,)`` or ``(1, D)``,
with edits drawn partly along the text direction and partly against it, so that the losses spread over [0, 2].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core import clip_loss
from .checks import Part, Wrong, as_tensor, call, diagnose, exercise, gap, same

__all__: list[str] = []


def _unit(v: torch.Tensor) -> torch.Tensor:
    return F.normalize(v, dim=-1)


def _draw(rng: torch.Generator, n: int, d: int, text_shape):
    """Unit embeddings: ``n`` source images, their edits (moved along ±ΔT by varied amounts, plus noise) and a
    source/target text pair of shape ``text_shape``."""
    txt_source = _unit(torch.randn(d, generator=rng))
    txt_target = _unit(txt_source + 1.2 * _unit(torch.randn(d, generator=rng)))
    d_txt = txt_target - txt_source
    img_source = _unit(torch.randn(n, d, generator=rng))
    along = torch.linspace(-1.0, 1.5, n)[torch.randperm(n, generator=rng)].unsqueeze(1)
    img_edit = _unit(img_source + along * d_txt + 0.3 * torch.randn(n, d, generator=rng))
    return img_edit, img_source, txt_target.reshape(text_shape), txt_source.reshape(text_shape)


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = torch.broadcast_tensors(a, b)
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))


def _check_directional_clip_loss(fn, rng):
    for n, d, text_shape in ((6, 16, (16,)), (5, 12, (1, 12))):
        i_edit, i_src, t_tgt, t_src = _draw(rng, n, d, text_shape)
        out = call(fn, i_edit.clone(), i_src.clone(), t_tgt.clone(), t_src.clone(), name="your directional_clip_loss")
        ref = clip_loss.directional_clip_loss(i_edit, i_src, t_tgt, t_src)
        if isinstance(out, torch.Tensor) and out.numel() == 1:
            raise Wrong(f"return one loss per image, shape ({n},): yours returns a single number (a mean or a sum "
                        "over the images?)")
        if isinstance(out, torch.Tensor) and tuple(out.shape) == (d,):
            raise Wrong(f"your loss has shape ({d},), one value per embedding coordinate: take the cosine over the "
                        "last dimension (the embedding), one value per image")
        mine = as_tensor(out, ref, "your loss")
        if same(mine, ref):
            continue
        d_img, d_txt = i_edit - i_src, t_tgt - t_src
        cos = _cos(d_img, d_txt)
        signs = ("look at the signs: ΔI = E_I(edit) − E_I(source), ΔT = E_T(target) − E_T(source), and the loss is "
                 "1 − cos(ΔI, ΔT); yours is 1 + cos(ΔI, ΔT), the loss of moving *against* the text")
        raise Wrong(diagnose(mine, [
            (1 + cos, signs),
            (cos, "this is the similarity S_dir = cos(ΔI, ΔT); the loss is 1 − cos(ΔI, ΔT) (0 when the image moved "
                  "along the text)"),
            (-cos, "the loss is 1 − cos(ΔI, ΔT), not −cos(ΔI, ΔT) (it lies in [0, 2])"),
            (1 - (d_img * d_txt).sum(-1), "you take the plain dot product ΔI·ΔT: divide it by ‖ΔI‖·‖ΔT‖ to get the "
                                          "cosine (ΔI and ΔT are differences of unit vectors, not unit vectors)"),
            (1 - (d_img * d_txt).sum(-1) / d_txt.norm(dim=-1), "divide the dot product by both lengths, ‖ΔI‖·‖ΔT‖ "
                                                               "(yours divides by ‖ΔT‖ only)"),
            (1 - (d_img * d_txt).sum(-1) / d_img.norm(dim=-1), "divide the dot product by both lengths, ‖ΔI‖·‖ΔT‖ "
                                                               "(yours divides by ‖ΔI‖ only)"),
            (1 - _cos(i_edit, t_tgt), "you compare the edited image with the target text directly (the plain CLIP "
                                      "loss): the directional loss compares the changes ΔI and ΔT"),
            (1 - _cos(i_edit, d_txt), "ΔI = E_I(edit) − E_I(source): yours uses E_I(edit) alone"),
            (1 - _cos(d_img, t_tgt), "ΔT = E_T(target) − E_T(source): yours uses E_T(target) alone"),
            (1 - _cos(i_edit - t_tgt, i_src - t_src), "ΔI is the change of the *image* embedding, E_I(edit) − "
                                                      "E_I(source), and ΔT that of the *text* embedding"),
        ], f"your loss differs from 1 − cos(ΔI, ΔT) by up to {gap(mine, ref):.3g}"
           + (" (with text embeddings of shape (1, D): they broadcast over the N images)" if len(text_shape) == 2
              else "")))


exercise("02.1", "02_directional_clip", "the directional CLIP loss (eq. 3)", [
    Part("directional_clip_loss", "asyrp_lib.core.clip_loss:directional_clip_loss", _check_directional_clip_loss,
         symbol="1 − cos(ΔI, ΔT)",
         guards=("asyrp_lib.core.clip_loss:directional_clip_loss", "asyrp_lib.core.clip_loss:directional_similarity")),
])
