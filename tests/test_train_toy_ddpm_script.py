"""scripts/train_toy_ddpm.py's --skip-dropout and --skip-swap hooks, on the tiny profile's random U-Net (seconds)."""
import argparse
import json

import pytest
import torch
from _scripts import load_script

from asyrp_lib.models.profiles import CONFIG_DIR


def _script():
    return load_script("scripts/train_toy_ddpm.py")


def _unet():
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    return UNet2DModel.from_config(json.loads((CONFIG_DIR / "tiny_unet.json").read_text()))


def _args(skip_dropout=0.0, skip_swap=0.0, skip_from=400):
    return argparse.Namespace(skip_dropout=skip_dropout, skip_swap=skip_swap, skip_from=skip_from)


def test_skip_swap_gives_each_late_sample_its_twins_skips_with_its_own_h():
    from asyrp_lib.core.hspace import HSpaceUNet

    mod = _script()
    unet = _unet().train()
    size = unet.config.sample_size
    x = torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([100, 900, 100, 900])  # pairs (0, 2) and (1, 3), as the training loop makes them
    set_t = mod.add_skip_hooks(unet, _args(skip_swap=1.0), torch.Generator().manual_seed(0))
    with torch.no_grad():
        set_t(t)
        swapped = unet(x, t).sample
        set_t(None)
        plain = unet(x, t).sample
        hs = HSpaceUNet(unet)
        enc = hs.encode(x, t)
        # own h (rows 1, 3), the twin's skips and time embedding (rows 3, 1: the same t)
        expected = hs.decode(enc, h=enc.h[[1, 3]], rows=torch.tensor([3, 1]))
    assert torch.allclose(swapped[[0, 2]], plain[[0, 2]], atol=1e-5)  # t < 400: untouched
    assert torch.allclose(swapped[[1, 3]], expected, atol=1e-4)
    assert (swapped[[1, 3]] - plain[[1, 3]]).abs().max() > 1e-3


def test_skip_dropout_zeroes_skips_only_from_its_timestep_and_only_in_training():
    mod = _script()
    unet = _unet().train()
    size = unet.config.sample_size
    x = torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([10, 399, 400, 900])
    with torch.no_grad():
        plain = unet(x, t).sample
        set_t = mod.add_skip_hooks(unet, _args(skip_dropout=1.0), torch.Generator().manual_seed(0))
        set_t(t)
        dropped = unet(x, t).sample
        unet.eval()
        eval_out = unet(x, t).sample
    assert torch.equal(dropped[:2], plain[:2])  # t < 400: untouched
    assert (dropped[2:] - plain[2:]).abs().amax(dim=(1, 2, 3)).min() > 1e-4  # t >= 400: the skips are gone
    assert torch.allclose(eval_out, plain, atol=1e-5)  # eval mode (sampling, the EMA copy): every skip in place


def test_skip_options_refuse_bad_values_with_a_clear_message(capsys):
    mod = _script()
    for argv, words in ((["--skip-swap", "1.5"], "--skip-swap: a probability in [0, 1], got 1.5"),
                        (["--skip-dropout", "-0.1"], "--skip-dropout: a probability in [0, 1]"),
                        (["--skip-swap", "0.5", "--batch", "1"], "pairs need --batch of at least 2"),
                        (["--swap-pairs", "twins"], "--swap-pairs twins: pairs are made only with --skip-swap")):
        with pytest.raises(SystemExit):
            mod.parse_args(argv)
        assert words in capsys.readouterr().err
    assert mod.parse_args(["--skip-swap", "0.5"]).skip_from == 400


def test_skip_dropout_zero_probability_registers_nothing():
    mod = _script()
    unet = _unet().train()
    mod.add_skip_hooks(unet, _args(), torch.Generator())
    assert all(not block._forward_pre_hooks for block in unet.up_blocks)


def test_swap_pairs_twins_differ_in_one_attribute_and_keep_the_prior():
    from asyrp_lib.toy import toyworld

    mod = _script()
    faces = toyworld.sample_attributes(1400, seed=11)
    twins = mod.twin_attributes(faces, seed=12)
    changed = [[k for k in toyworld.ATTRIBUTES if f[k] != t[k]] for f, t in zip(faces, twins)]
    assert all(len(c) == 1 for c in changed)  # exactly one attribute differs, never none
    assert all(f["jitter"] == t["jitter"] for f, t in zip(faces, twins))  # the same pose
    counts = {k: sum(c == [k] for c in changed) for k in toyworld.ATTRIBUTES}
    assert min(counts.values()) > 140 and max(counts.values()) < 280, counts  # about 200 each of the 7
    assert not any(c == ["hair_color"] and f["hair"] == "none" for c, f in zip(changed, faces))  # it would not show
    for k in toyworld.CATEGORICAL:  # the twins' values stay uniform, as the faces' are
        share = [sum(t[k] == v for t in twins) / len(twins) for v in toyworld.ATTRIBUTES[k]]
        assert max(abs(s - 1 / len(share)) for s in share) < 0.06, (k, share)
    rendered, rendered_twins = mod.render_pool(40, seed=3, device="cpu", twins=True)
    assert rendered.dtype == rendered_twins.dtype == torch.uint8 and rendered.shape == rendered_twins.shape
    faces_alone, none = mod.render_pool(40, seed=3, device="cpu")
    assert torch.equal(rendered, faces_alone) and none is None  # the faces as without twins
    assert ((rendered.float() - rendered_twins.float()).abs().amax(dim=(1, 2, 3)) > 0).all()
    with pytest.raises(SystemExit):
        mod.parse_args(["--swap-pairs", "siblings"])
