r"""U-Nets that predict v, seen by the rest of the library as ε-predictors.

The course teaches DDIM with ε (P_t and D_t are written with ε), and every function of the library asks
the model for ε. A model may still be *trained* to predict another quantity; the toy DDPM predicts the
velocity v (Salimans & Ho 2022, "Progressive Distillation"):

    x_t = sqrt(ᾱ_t) x_0 + sqrt(1 - ᾱ_t) ε,      v = sqrt(ᾱ_t) ε - sqrt(1 - ᾱ_t) x_0,

so that   ε = sqrt(ᾱ_t) v + sqrt(1 - ᾱ_t) x_t   and   P_t = x_0 = sqrt(ᾱ_t) x_t - sqrt(1 - ᾱ_t) v.

Why: the plain ε loss weights the error of P_t by SNR_t = ᾱ_t / (1 - ᾱ_t), which is 4·10⁻⁵ at t = 999,
so an ε-model barely learns what x_0 looks like at high t — where the global colours of a sample are
decided — and a bf16 forward pass cannot even represent the small correction to ε ≈ x_t that carries
them. The v loss weights the P_t error by SNR_t + 1 ≥ 1 and its target is of order 1 at every t.

:class:`VPredictionUNet2DModel` is a ``diffusers.UNet2DModel`` whose ``forward`` returns ε; its network
output (v) is turned into ε by :meth:`~VPredictionUNet2DModel.output_to_eps`, which
:class:`asyrp_lib.core.hspace.HSpaceUNet` calls after its own decoder, so h-space edits work unchanged.
"""
from __future__ import annotations

import torch
from diffusers import UNet2DModel
from diffusers.models.unets.unet_2d import UNet2DOutput

__all__ = ["VPredictionUNet2DModel", "v_target", "eps_from_v", "load_unet_folder", "load_folder"]


def _factor(a: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return a.to(device=like.device, dtype=like.dtype).view(-1, *([1] * (like.dim() - 1)))


def v_target(x_0: torch.Tensor, eps: torch.Tensor, alpha_t: torch.Tensor) -> torch.Tensor:
    """v = sqrt(ᾱ_t) ε - sqrt(1 - ᾱ_t) x_0, the training target of a v-prediction model (``alpha_t``: (N,))."""
    a = _factor(alpha_t, x_0)
    return a.sqrt() * eps - (1 - a).sqrt() * x_0


def eps_from_v(v: torch.Tensor, x_t: torch.Tensor, alpha_t: torch.Tensor) -> torch.Tensor:
    """ε = sqrt(ᾱ_t) v + sqrt(1 - ᾱ_t) x_t (``alpha_t``: (N,))."""
    a = _factor(alpha_t, x_t)
    return a.sqrt() * v + (1 - a).sqrt() * x_t.to(v.dtype)


class VPredictionUNet2DModel(UNet2DModel):
    """A ``UNet2DModel`` trained to predict v; ``forward`` returns ε (see the module docstring).

    ᾱ is kept in float32 outside the module's state (not saved, not cast by ``.half()``): call
    :meth:`set_alphas_cumprod` after loading (``load_unet_folder`` does).
    """

    prediction_type = "v_prediction"

    def set_alphas_cumprod(self, alphas_cumprod: torch.Tensor) -> "VPredictionUNet2DModel":
        object.__setattr__(self, "_alphas_cumprod", torch.as_tensor(alphas_cumprod, dtype=torch.float32).flatten())
        return self

    def _alpha(self, timestep, n: int, device) -> torch.Tensor:
        if getattr(self, "_alphas_cumprod", None) is None:
            raise RuntimeError("VPredictionUNet2DModel: ᾱ is not set; call set_alphas_cumprod(schedule.alphas_cumprod)")
        t = torch.as_tensor(timestep, device=device).long().flatten()
        t = t.expand(n) if t.numel() == 1 else t
        return self._alphas_cumprod.to(device)[t]

    def output_to_eps(self, output: torch.Tensor, x_t: torch.Tensor, timestep) -> torch.Tensor:
        """ε from the network's output (v) at ``x_t`` and ``timestep`` (an int or (N,) tensor)."""
        return eps_from_v(output, x_t, self._alpha(timestep, x_t.shape[0], x_t.device))

    def predict_v(self, sample: torch.Tensor, timestep, **kw) -> torch.Tensor:
        """The network's own output v (for training)."""
        return super().forward(sample, timestep, **kw).sample

    def forward(self, sample: torch.Tensor, timestep, class_labels=None, return_dict: bool = True):
        v = super().forward(sample, timestep, class_labels=class_labels).sample
        eps = self.output_to_eps(v, sample, timestep)
        return UNet2DOutput(sample=eps) if return_dict else (eps,)


def load_unet_folder(folder, prediction_type: str = "epsilon", alphas_cumprod: torch.Tensor | None = None,
                     **kw) -> UNet2DModel:
    """A ``UNet2DModel`` from a ``save_pretrained`` folder; a :class:`VPredictionUNet2DModel` (ᾱ set) when the
    scheduler's ``prediction_type`` is ``"v_prediction"``."""
    kw.setdefault("low_cpu_mem_usage", False)  # no warning where the optional ``accelerate`` is missing
    if prediction_type == "epsilon":
        return UNet2DModel.from_pretrained(str(folder), **kw)
    if prediction_type != "v_prediction":
        raise ValueError(f"prediction_type: expected 'epsilon' or 'v_prediction' (from the scheduler config), "
                         f"got {prediction_type!r}")
    if alphas_cumprod is None:
        raise ValueError("alphas_cumprod: a v-prediction model needs the schedule's ᾱ to return ε")
    return VPredictionUNet2DModel.from_pretrained(str(folder), **kw).set_alphas_cumprod(alphas_cumprod)


def load_folder(folder, **kw):
    """(unet, schedule) from a folder with ``config.json``, the weights and ``scheduler_config.json`` (a DDPM
    scheduler: ᾱ, ``clip_sample``, ``prediction_type``); without a scheduler config, the DDPM linear schedule
    and ε-prediction."""
    from pathlib import Path

    from diffusers import DDPMScheduler

    from ..core.ddim import Schedule

    folder = Path(folder)
    if (folder / "scheduler_config.json").is_file():
        scheduler = DDPMScheduler.from_pretrained(str(folder))
        schedule, prediction = Schedule.from_scheduler(scheduler), scheduler.config.prediction_type
    else:
        schedule, prediction = Schedule.linear(), "epsilon"
    return load_unet_folder(folder, prediction, schedule.alphas_cumprod, **kw), schedule
