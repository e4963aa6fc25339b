"""A v-prediction U-Net is used through ε everywhere: forward, the h-space split, sampling, loading."""
import json

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel

from asyrp_lib.core import ddim
from asyrp_lib.core.hspace import HSpaceUNet
from asyrp_lib.models.profiles import CONFIG_DIR, load_profile
from asyrp_lib.models.unets import VPredictionUNet2DModel, eps_from_v, load_folder, v_target


@pytest.fixture(scope="module")
def vmodel():
    torch.manual_seed(0)
    cfg = json.loads((CONFIG_DIR / "tiny_unet.json").read_text())
    model = VPredictionUNet2DModel.from_config(cfg).eval()
    return model.set_alphas_cumprod(ddim.Schedule.linear().alphas_cumprod)


def test_v_and_eps_conversions_are_inverse():
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(4, 3, 8, 8, generator=g), torch.randn(4, 3, 8, 8, generator=g)
    a = torch.tensor([0.999, 0.5, 0.01, 4e-5])
    x_t = a.view(-1, 1, 1, 1).sqrt() * x0 + (1 - a).view(-1, 1, 1, 1).sqrt() * eps
    v = v_target(x0, eps, a)
    torch.testing.assert_close(eps_from_v(v, x_t, a), eps, atol=1e-5, rtol=1e-5)
    # and P_t computed from that ε is x0 (course eq. 2)
    torch.testing.assert_close(ddim.predicted_x0(x_t, eps_from_v(v, x_t, a), a), x0, atol=2e-3, rtol=1e-3)


def test_forward_returns_eps_and_hspace_agrees(vmodel):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 32, 32, generator=g)
    t = torch.tensor([900, 20])
    with torch.no_grad():
        v = vmodel.predict_v(x, t)
        eps = vmodel(x, t).sample
        a = ddim.Schedule.linear().alpha(t)
        torch.testing.assert_close(eps, eps_from_v(v, x, a))
        hs = HSpaceUNet(vmodel)
        torch.testing.assert_close(hs(x, t), eps, atol=1e-5, rtol=1e-5)
        e_edit, e = hs.eps(x, t, torch.zeros_like(hs.encode(x, t).h))
        torch.testing.assert_close(e_edit, e)
        torch.testing.assert_close(e, eps, atol=1e-5, rtol=1e-5)


def test_sampling_a_v_model_matches_diffusers(vmodel):
    sched = DDIMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                          clip_sample=False, set_alpha_to_one=True, steps_offset=0, prediction_type="v_prediction")
    sched.set_timesteps(5)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    ref = x.clone()
    with torch.no_grad():
        for t in sched.timesteps:
            ref = sched.step(vmodel.predict_v(ref, t), t, ref).prev_sample
    ours = ddim.sample(vmodel, x, ddim.timesteps(5), ddim.Schedule.linear(), progress=False)
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)


def test_folder_with_v_prediction_loads_as_eps_model(vmodel, tmp_path):
    vmodel.save_pretrained(tmp_path)
    DDPMScheduler(beta_start=1e-4, beta_end=0.02, clip_sample=True, prediction_type="v_prediction").save_pretrained(tmp_path)
    unet, schedule = load_folder(tmp_path)
    assert isinstance(unet, VPredictionUNet2DModel) and schedule.clip_sample
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(unet(x, 500).sample, vmodel(x, 500).sample)
    p = load_profile(str(tmp_path), device="cpu")
    assert isinstance(p.unet, VPredictionUNet2DModel) and p.schedule.clip_sample
    # an ε folder stays a plain UNet2DModel
    eps_dir = tmp_path / "eps"
    UNet2DModel.from_config(vmodel.config).save_pretrained(eps_dir)
    plain, sch = load_folder(eps_dir)
    assert type(plain) is UNet2DModel and not sch.clip_sample


def test_unknown_prediction_type_is_a_clear_error(vmodel, tmp_path):
    vmodel.save_pretrained(tmp_path)
    DDPMScheduler(prediction_type="sample").save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="prediction_type"):
        load_folder(tmp_path)
