"""The split U-Net: encode/decode equals the model's forward; the edited pass equals a hooked forward."""
import json

import pytest
import torch
from diffusers import UNet2DModel

from asyrp_lib.core.hspace import HSpaceUNet, h_shape
from asyrp_lib.models.profiles import CONFIG_DIR

SMALL = dict(sample_size=16, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
             down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
             attention_head_dim=4)
SKIP = dict(sample_size=16, block_out_channels=(32, 32, 32), layers_per_block=1, norm_num_groups=8,
            down_block_types=("SkipDownBlock2D", "AttnSkipDownBlock2D", "SkipDownBlock2D"),
            up_block_types=("SkipUpBlock2D", "AttnSkipUpBlock2D", "SkipUpBlock2D"), attention_head_dim=4,
            time_embedding_type="fourier", center_input_sample=True, resnet_time_scale_shift="scale_shift")


def celebahq():
    return json.loads((CONFIG_DIR / "celebahq_unet.json").read_text())


CONFIGS = {"tiny": lambda: json.loads((CONFIG_DIR / "tiny_unet.json").read_text()), "small-attn": lambda: SMALL,
           "skip-fourier": lambda: SKIP, "celebahq": celebahq}
SIZES = {"tiny": 32, "small-attn": 16, "skip-fourier": 16, "celebahq": 64}


@pytest.fixture(scope="module", params=list(CONFIGS))
def model(request):
    torch.manual_seed(0)
    unet = UNet2DModel.from_config(CONFIGS[request.param]()).eval()
    # random-init output layers are zero in some configs; make every path matter
    with torch.no_grad():
        for p in unet.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.02)
    return unet, SIZES[request.param]


def inputs(unet, size, n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g), torch.tensor([999, 321][:n])


def test_eps_equals_the_models_forward(model):
    unet, size = model
    x, t = inputs(unet, size)
    with torch.no_grad():
        ref = unet(x, t).sample
        ours = HSpaceUNet(unet).eps(x, t)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_shared_encoder_edit_equals_hooked_forward(model):
    unet, size = model
    x, t = inputs(unet, size)
    hs = HSpaceUNet(unet)
    with torch.no_grad():
        h = hs.encode(x, t).h
        delta = torch.randn(h.shape, generator=torch.Generator().manual_seed(5)) * h.std()
        handle = unet.mid_block.register_forward_hook(lambda mod, args, out: out + delta)
        try:
            ref_edit = unet(x, t).sample
        finally:
            handle.remove()
        ref = unet(x, t).sample
        eps_edit, eps = hs.eps(x, t, delta_h=delta)
    torch.testing.assert_close(eps_edit, ref_edit, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(eps, ref, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(eps_edit, eps)


def test_encoder_runs_once_per_edited_step(model):
    unet, size = model
    x, t = inputs(unet, size)
    calls = {"down": 0, "up": 0}
    h1 = unet.down_blocks[0].register_forward_hook(lambda *a: calls.__setitem__("down", calls["down"] + 1))
    h2 = unet.up_blocks[0].register_forward_hook(lambda *a: calls.__setitem__("up", calls["up"] + 1))
    try:
        with torch.no_grad():
            hs = HSpaceUNet(unet)
            hs.eps(x, t, delta_h=torch.zeros(hs.encode(x, t).h.shape[1:]))
    finally:
        h1.remove(), h2.remove()
    assert calls == {"down": 2, "up": 1}  # one encode for the shape above, one inside eps; one decoder pass


def test_h_shape_matches_encode(model):
    unet, size = model
    x, t = inputs(unet, size, n=1)
    with torch.no_grad():
        assert tuple(HSpaceUNet(unet).encode(x, t).h.shape[1:]) == h_shape(unet, size)


def test_celebahq_bottleneck_is_512x8x8():
    unet = UNet2DModel.from_config(celebahq())
    assert h_shape(unet) == (512, 8, 8)


def test_gradients_flow_to_delta_h(model):
    unet, size = model
    x, t = inputs(unet, size)
    hs = HSpaceUNet(unet)
    delta = torch.zeros(hs.h_shape(size), requires_grad=True)
    eps_edit, eps = hs.eps(x, t, delta_h=delta)
    eps_edit.square().sum().backward()
    assert delta.grad is not None and delta.grad.abs().sum() > 0


def test_bad_input():
    with pytest.raises(ValueError, match="mid block"):
        HSpaceUNet(UNet2DModel.from_config({**SMALL, "mid_block_type": None}))
    with pytest.raises(ValueError, match="unet"):
        HSpaceUNet(torch.nn.Linear(2, 2))
    hs = HSpaceUNet(UNet2DModel.from_config(SMALL))
    x = torch.zeros(2, 3, 16, 16)
    with pytest.raises(ValueError, match="delta_h"):
        hs.eps(x, 5, delta_h=torch.zeros(3, 3, 3))
    with pytest.raises(ValueError, match="x_t"):
        hs.eps(torch.zeros(2, 1, 16, 16), 5)
    with pytest.raises(ValueError, match="t:"):
        hs.eps(x, torch.tensor([1, 2, 3]))
