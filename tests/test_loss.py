"""The loss of one editing step (asyrp_lib.core.loss), pinned to its closed form on the tiny model: the directional
term, the L1 term against each target (the unedited trajectory, the default, or P_t at the edited x_t) and the
text-cosine weighting; and one loss for every edit."""
import pytest
import torch

from asyrp_lib.core import ddim
from asyrp_lib.models.clip import DirectionalCLIPLoss
from asyrp_lib.core.loss import AsyrpLoss, l1_distance
from asyrp_lib.core.process import DeltaH, reverse_process

TS = ddim.timesteps(4)  # [750, 500, 250, 0]


@pytest.fixture(scope="module")
def setup(tiny):
    clip_loss = DirectionalCLIPLoss(tiny.clip, "face", "smiling face")
    x0 = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    x_T = ddim.invert(tiny.unet, x0, TS, tiny.schedule, progress=False)
    dh = 0.5 * torch.randn(tiny.h_shape, generator=torch.Generator().manual_seed(1))
    return clip_loss, x0, x_T, dh


def manual_terms(tiny, clip_loss, x0, x_T, dh, step_index, target):
    """Closed form: walk both trajectories with ddim_step, then write L_t out."""
    hs, sched = tiny.hspace, tiny.schedule
    x_e, x_o = x_T, x_T
    with torch.no_grad():
        for t, t_prev in list(zip(TS, ddim.previous_timesteps(TS)))[:step_index]:
            a, a_prev = sched.alpha(t), sched.alpha(t_prev)
            eps_edit, eps = hs.eps(x_e, t, dh.unsqueeze(0))
            x_e = ddim.ddim_step(x_e, eps_edit, a, a_prev, eps_direction=eps).x_prev  # eq. (4)
            x_o = ddim.ddim_step(x_o, hs.eps(x_o, t), a, a_prev).x_prev  # the unedited trajectory
        t = TS[step_index]
        a = sched.alpha(t)
        eps_edit, eps = hs.eps(x_e, t, dh.unsqueeze(0))
        p_edit = ddim.predicted_x0(x_e, eps_edit, a)
        p_src = ddim.predicted_x0(x_o, hs.eps(x_o, t), a) if target == "unedited" else ddim.predicted_x0(x_e, eps, a)
        cos = clip_loss.similarity(p_edit, x0)
    return p_edit, p_src, cos


@pytest.mark.parametrize("target", ["unedited", "current"])
@pytest.mark.parametrize("form", ["log", "cosine"])
def test_loss_terms_match_the_closed_form(tiny, setup, target, form):
    clip_loss, x0, x_T, dh = setup
    loss = AsyrpLoss(lambda_clip=0.7, lambda_l1=2.5, clip_form=form, l1_target=target)
    src = clip_loss.encoder.encode_image(x0)
    steps = reverse_process(tiny.hspace, x_T, TS, tiny.schedule, edit=DeltaH(dh), t_edit=250,
                            reconstruct=target == "unedited", until_edit_done=True)
    for i, step in enumerate(steps):
        terms = loss.terms(step, clip_loss, src)
        p_edit, p_src, cos = manual_terms(tiny, clip_loss, x0, x_T, dh, i, target)
        l_dir = (-torch.log((1 + cos) / 2) if form == "log" else 1 - cos).mean()
        l1 = (p_edit - p_src).abs().mean()
        torch.testing.assert_close(terms.clip.detach(), l_dir, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(terms.l1.detach(), l1, atol=1e-4, rtol=1e-4)
        expected = 0.7 * l_dir + 2.5 * clip_loss.text_cosine * l1  # λ_L1 weighted by cos(E_T(src), E_T(trg))
        torch.testing.assert_close(terms.total.detach(), expected, atol=1e-4, rtol=1e-4)
    assert i == 2  # the edit steps 750, 500, 250


def test_the_two_l1_targets_agree_at_the_first_step_and_differ_after(tiny, setup):
    clip_loss, x0, x_T, dh = setup
    src = clip_loss.encoder.encode_image(x0)
    out = {}
    for target in ("unedited", "current"):
        steps = reverse_process(tiny.hspace, x_T, TS, tiny.schedule, edit=DeltaH(dh), t_edit=250,
                                reconstruct=target == "unedited", until_edit_done=True)
        out[target] = [float(AsyrpLoss(l1_target=target).terms(s, clip_loss, src).l1) for s in steps]
    assert out["unedited"][0] == pytest.approx(out["current"][0], rel=1e-4)  # same x_T: same x_t at the first step
    assert out["unedited"][2] > out["current"][2] * 1.01  # later, the edited x_t has moved away from the unedited one


def test_text_weight_off_and_bad_settings(tiny, setup):
    clip_loss, x0, x_T, dh = setup
    step = next(reverse_process(tiny.hspace, x_T, TS, tiny.schedule, edit=DeltaH(dh), t_edit=250, reconstruct=True))
    src = clip_loss.encoder.encode_image(x0)
    on = AsyrpLoss().terms(step, clip_loss, src)
    off = AsyrpLoss(l1_text_weight=False).terms(step, clip_loss, src)
    torch.testing.assert_close(off.total.detach(), (on.clip + 3.0 * on.l1).detach())
    with pytest.raises(ValueError, match="l1_target"):
        AsyrpLoss(l1_target="source")
    with pytest.raises(ValueError, match="reconstruct=True"):
        plain = next(reverse_process(tiny.hspace, x_T, TS, tiny.schedule, edit=DeltaH(dh), t_edit=250))
        AsyrpLoss().terms(plain, clip_loss, src)
    with pytest.raises(ValueError, match="lambda_l1"):
        AsyrpLoss(lambda_l1=-1)


def test_l1_spare_leaves_out_the_most_changed_pixels():
    a = torch.zeros(2, 3, 4, 4)
    b = torch.zeros(2, 3, 4, 4)
    b[0, :, 0, :] = 1.0  # image 0: one row of 4 pixels changed by 1 in every channel (a "region")
    b[0, 0, 3, 3] = 0.3  # ... and one pixel by 0.3 in one channel only (0.1 averaged over channels)
    b[1, 1, 2, 2] = 0.6  # image 1: one pixel, 0.2 averaged over channels
    assert float(l1_distance(a, b)) == pytest.approx((12 + 0.3 + 0.6) / 96)  # spare 0: the plain mean
    # spare 0.25 = 4 of 16 pixels left out per image: image 0's region goes (the stray pixel stays charged);
    # image 1's changed pixel goes too, with three unchanged ones
    assert float(l1_distance(a, b, 0.25)) == pytest.approx((0.1 / 12 + 0.0) / 2)
    # the gradient reaches only the pixels still charged
    x = b.clone().requires_grad_(True)
    l1_distance(x, a, 0.25).backward()
    assert x.grad[0, :, 0, :].abs().sum() == 0 and x.grad[0, 0, 3, 3] > 0


def test_l1_spare_in_the_loss_and_its_bounds(tiny, setup):
    clip_loss, x0, x_T, dh = setup
    src = clip_loss.encoder.encode_image(x0)
    step = list(reverse_process(tiny.hspace, x_T, TS, tiny.schedule, edit=DeltaH(dh), t_edit=250,
                                reconstruct=True, until_edit_done=True))[-1]
    plain = AsyrpLoss().terms(step, clip_loss, src)
    spared = AsyrpLoss(l1_spare=0.5).terms(step, clip_loss, src)
    diff = (step.pred_x0[:step.n] - step.pred_x0_unedited).abs().mean(dim=1).flatten(1)
    expected = diff.sort(dim=1).values[:, : diff.shape[1] // 2].mean()  # the less-changed half of each image
    torch.testing.assert_close(spared.l1.detach(), expected.detach(), atol=1e-6, rtol=1e-5)
    assert float(spared.l1) < float(plain.l1)
    torch.testing.assert_close(spared.clip, plain.clip)  # the directional term is untouched
    for bad in (-0.1, 1.0, True, "0.2"):
        with pytest.raises(ValueError, match="l1_spare"):
            AsyrpLoss(l1_spare=bad)
