"""scripts/train_toy_ddpm.py's --skip-dropout hooks, on the tiny profile's random U-Net (seconds)."""
import argparse
import importlib.util
import json
from pathlib import Path

import torch

from asyrp_lib.profiles import CONFIG_DIR

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "train_toy_ddpm.py"


def _script():
    spec = importlib.util.spec_from_file_location("train_toy_ddpm", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _unet():
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    return UNet2DModel.from_config(json.loads((CONFIG_DIR / "tiny_unet.json").read_text()))


def test_skip_dropout_zeroes_skips_only_from_its_timestep_and_only_in_training():
    mod = _script()
    unet = _unet().train()
    size = unet.config.sample_size
    x = torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([10, 399, 400, 900])
    with torch.no_grad():
        plain = unet(x, t).sample
        set_t = mod.add_skip_dropout(unet, argparse.Namespace(skip_dropout=1.0, skip_dropout_from=400),
                                     torch.Generator().manual_seed(0))
        set_t(t)
        dropped = unet(x, t).sample
        unet.eval()
        eval_out = unet(x, t).sample
    assert torch.equal(dropped[:2], plain[:2])  # t < 400: untouched
    assert (dropped[2:] - plain[2:]).abs().amax(dim=(1, 2, 3)).min() > 1e-4  # t >= 400: the skips are gone
    assert torch.allclose(eval_out, plain, atol=1e-5)  # eval mode (sampling, the EMA copy): every skip in place


def test_skip_dropout_zero_probability_registers_nothing():
    mod = _script()
    unet = _unet().train()
    mod.add_skip_dropout(unet, argparse.Namespace(skip_dropout=0.0, skip_dropout_from=400), torch.Generator())
    assert all(not block._forward_pre_hooks for block in unet.up_blocks)
