"""Tests for asyrp_lib.core.intervals: the ξ_t / λ_t curves and the choice of t_edit and t_boost."""

import numpy as np
import pytest
import torch
from diffusers import UNet2DModel

from asyrp_lib.core import ddim, intervals
from asyrp_lib.core.intervals import edit_threshold, select_t_boost, select_t_edit
from asyrp_lib.models.perceptual import load_lpips


# ---------------------------------------------------------------------------------------------
# Threshold selection on synthetic curves
# ---------------------------------------------------------------------------------------------

def test_select_on_monotone_curve_in_any_order():
    ts = np.arange(0, 1000, 10)
    curve = ts / 1000.0  # reaches 0.33 at t = 330 and 1.2·(2/3) = 0.8 at t = 800
    assert select_t_edit(ts, curve) == 330
    assert select_t_boost(ts, curve * 1.5) == 800
    perm = np.random.default_rng(0).permutation(ts.size)
    assert select_t_edit(ts[perm], curve[perm]) == 330
    assert select_t_edit(list(ts), torch.tensor(curve), threshold=0.5) == 500


def test_select_uses_mean_over_images_and_first_crossing():
    ts = [0, 100, 200, 300, 400]
    per_image = torch.tensor([[0.0, 0.1], [0.1, 0.3], [0.2, 0.5], [0.3, 0.6], [0.4, 0.7]])  # (T, N)
    # means: 0.05, 0.2, 0.35, 0.45, 0.55 → 0.33 first reached at t = 200 (image 1 alone would give 200, image 0 never)
    assert select_t_edit(ts, per_image) == 200
    assert select_t_edit(ts, per_image, threshold=0.45) == 300
    bumpy = [0.1, 0.4, 0.2, 0.5, 0.6]
    assert select_t_edit(ts, bumpy) == 100  # the first time it is reached, counting up from t = 0


def test_select_errors():
    ts = [0, 100, 200]
    with pytest.raises(ValueError, match=r"never reaches 1.2: its maximum is 0.9 at t = 200"):
        select_t_boost(ts, [0.1, 0.5, 0.9])
    with pytest.raises(ValueError, match="shape"):
        select_t_edit(ts, [0.1, 0.5])
    with pytest.raises(ValueError, match="repeat"):
        select_t_edit([0, 0, 100], [0.1, 0.2, 0.5])
    with pytest.raises(ValueError, match="NaN"):
        select_t_edit(ts, [0.1, float("nan"), 0.5])
    with pytest.raises(ValueError, match="threshold"):
        select_t_edit(ts, [0.1, 0.2, 0.5], threshold=0)


def test_edit_threshold_scales_with_text_cosine():
    assert edit_threshold(0.8) == pytest.approx(0.33 * 0.8)
    assert edit_threshold(1.0, base=0.5) == pytest.approx(0.5)
    ts = np.arange(0, 1000, 10)
    curve = np.sqrt(ts / 1000.0)
    # a more different target (lower cosine) gives a smaller t_edit, i.e. a longer editing interval [t_edit, T]
    assert select_t_edit(ts, curve, edit_threshold(0.6)) < select_t_edit(ts, curve, edit_threshold(0.95))
    for bad in (0.0, -0.3, 1.5):
        with pytest.raises(ValueError, match="text_cosine"):
            edit_threshold(bad)


# ---------------------------------------------------------------------------------------------
# The curves with a tiny random U-Net
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(8, 16), norm_num_groups=4,
                       layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D")).eval()
    g = torch.Generator().manual_seed(1)
    x0 = torch.nn.functional.interpolate(torch.randn(3, 3, 8, 8, generator=g), size=32, mode="bilinear").tanh()
    return unet, x0, ddim.Schedule.linear(), load_lpips("alex", device="cpu", verbose=False)


def test_curve_shapes_and_growth(setup):
    unet, x0, schedule, lpips = setup
    ts = [0, 100, 250, 400, 550, 700, 850, 999]
    xt = intervals.lpips_x_xt(x0, schedule, lpips, list(reversed(ts)), progress=False)
    pt = intervals.lpips_x_pt(unet, x0, schedule, lpips, ts, progress=False)
    for c in (xt, pt):
        assert c.timesteps == ts  # sorted ascending
        assert c.values.shape == (len(ts), 3) and c.mean.shape == (len(ts),)
        torch.testing.assert_close(c.mean, c.values.mean(dim=1))
        assert torch.isfinite(c.values).all() and (c.values >= 0).all()
    # λ_t = LPIPS(x, x_t) grows with t: x_t carries more noise
    assert xt.mean[0] < 0.01
    assert (np.diff(xt.mean.numpy()) > 0).mean() >= 0.8
    assert xt.mean[-1] > 4 * xt.mean[1]
    # the selected timestep is where the mean curve first reaches the threshold
    thr = float(xt.mean[3] + xt.mean[4]) / 2  # between the 4th and 5th point of an increasing stretch
    assert xt.mean[3] < xt.mean[4]
    t_b = select_t_boost(xt.timesteps, xt.values, threshold=thr)
    i = ts.index(t_b)
    assert xt.mean[i] >= thr and (xt.mean[:i] < thr).all()
    assert xt.first_reaching(thr) == t_b
    t_e = select_t_edit(pt.timesteps, pt.values, threshold=float(pt.mean.max()) * 0.9)
    assert pt.mean[ts.index(t_e)] >= float(pt.mean.max()) * 0.9


def test_x_pt_matches_formula_at_one_timestep(setup):
    unet, x0, schedule, lpips = setup
    t, seed = 300, 5
    curve = intervals.lpips_x_pt(unet, x0, schedule, lpips, [t], seed=seed, progress=False)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    a = float(schedule.alpha(t))
    x_t = a ** 0.5 * x0 + (1 - a) ** 0.5 * noise
    with torch.no_grad():
        eps = unet(x_t, torch.full((3,), t)).sample
        p_t = (x_t - (1 - a) ** 0.5 * eps) / a ** 0.5
        expected = lpips(x0, p_t, check_range=False)
    torch.testing.assert_close(curve.values[0], expected, atol=1e-5, rtol=1e-4)


def test_perfect_denoiser_gives_zero_x_pt(setup):
    """With a model that predicts the true noise, P_t is x_0 at every t, so ξ_t = 0."""
    _, x0, schedule, lpips = setup
    a_table = schedule.alphas_cumprod

    def oracle(x_t, t):
        a = a_table[t[0]]
        return (x_t - a.sqrt() * x0) / (1 - a).sqrt()

    curve = intervals.lpips_x_pt(oracle, x0, schedule, lpips, [10, 500, 990], progress=False)
    assert curve.values.abs().max() < 1e-3


def test_curve_input_errors(setup):
    unet, x0, schedule, lpips = setup
    with pytest.raises(ValueError, match="x0"):
        intervals.lpips_x_xt(x0[0], schedule, lpips, progress=False)
    with pytest.raises(ValueError, match="timesteps"):
        intervals.lpips_x_xt(x0, schedule, lpips, [0, 1000], progress=False)
    with pytest.raises(ValueError, match="schedule"):
        intervals.lpips_x_xt(x0, schedule.alphas_cumprod, lpips, progress=False)
