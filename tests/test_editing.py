"""Global Δh in h-space (notebook 05): the asymmetric step (eq. 4/5) against its formula, zero Δh is plain
DDIM, the edit acts only for t ≥ t_edit, and the optimisation lowers the loss."""
import pytest
import torch

from asyrp_lib.core import ddim, editing
from asyrp_lib.models.clip import DirectionalCLIPLoss

SOURCE, TARGET = "face", "smiling face"
STEPS = 3  # timesteps [666, 333, 0]


@pytest.fixture(scope="module")
def clip_loss(tiny):
    return DirectionalCLIPLoss(tiny.clip, SOURCE, TARGET)


@pytest.fixture(scope="module")
def x_T():
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))


@pytest.fixture(scope="module")
def delta_h(tiny):
    return 0.5 * torch.randn(tiny.h_shape, generator=torch.Generator().manual_seed(4))


def test_edit_timesteps():
    assert editing.edit_timesteps([800, 600, 400, 200, 0], 400) == [800, 600, 400]
    assert editing.edit_timesteps([800, 600, 400, 200, 0], 0) == [800, 600, 400, 200, 0]


def test_zero_delta_h_is_plain_ddim(tiny, x_T):
    plain = ddim.sample(tiny.unet, x_T, ddim.timesteps(STEPS), tiny.schedule, progress=False)
    for asym in (True, False):
        out = editing.apply_delta_h(tiny, x_T, torch.zeros(tiny.h_shape), t_edit=0, n_steps=STEPS, asymmetric=asym,
                                    progress=False)
        torch.testing.assert_close(out.images, plain, rtol=1e-5, atol=1e-5)


def test_asymmetric_step_is_eq_5_and_plain_ddim_after_t_edit(tiny, x_T, delta_h):
    ts = ddim.timesteps(STEPS)
    # edit only the first step (t_edit = 666), then plain DDIM
    out = editing.apply_delta_h(tiny, x_T, delta_h, t_edit=ts[0], n_steps=STEPS, progress=False)
    assert out.edit_timesteps == [ts[0]]
    with torch.no_grad():
        eps_edit, eps = tiny.hspace.eps(x_T, ts[0], delta_h)
        a, a_prev = tiny.schedule.alpha(ts[0]), tiny.schedule.alpha(ts[1])
        x1 = a_prev.sqrt() * ddim.predicted_x0(x_T, eps_edit, a) + ddim.direction_to_xt(eps, a_prev)
    expected = ddim.sample(tiny.unet, x1, ts[1:], tiny.schedule, progress=False)
    torch.testing.assert_close(out.images, expected, rtol=1e-5, atol=1e-5)
    # the symmetric step uses the edited ε in D_t too, and gives another image
    sym = editing.apply_delta_h(tiny, x_T, delta_h, t_edit=ts[0], n_steps=STEPS, asymmetric=False, progress=False)
    x1_sym = ddim.ddim_step(x_T, eps_edit, a, a_prev).x_prev
    torch.testing.assert_close(sym.images, ddim.sample(tiny.unet, x1_sym, ts[1:], tiny.schedule, progress=False),
                               rtol=1e-5, atol=1e-5)
    assert (sym.images - out.images).abs().max() > 1e-3


def test_strength(tiny, x_T, delta_h):
    ts = ddim.timesteps(STEPS)
    plain = ddim.sample(tiny.unet, x_T, ts, tiny.schedule, progress=False)
    zero = editing.apply_delta_h(tiny, x_T, delta_h, t_edit=300, n_steps=STEPS, strength=0.0, progress=False)
    torch.testing.assert_close(zero.images, plain, rtol=1e-5, atol=1e-5)
    double = editing.apply_delta_h(tiny, x_T, 2 * delta_h, t_edit=300, n_steps=STEPS, keep_previews=True,
                                   progress=False)
    twice = editing.apply_delta_h(tiny, x_T, delta_h, t_edit=300, n_steps=STEPS, strength=2.0, progress=False)
    torch.testing.assert_close(double.images, twice.images, rtol=1e-5, atol=1e-5)
    assert len(double.pred_x0) == 2 and double.pred_x0[0].shape == x_T.shape


def test_optimisation_lowers_the_loss_and_results_replay(tiny, images, clip_loss):
    res = editing.optimize_global_delta_h(tiny, images[:2], SOURCE, TARGET, t_edit=300, n_steps=STEPS, epochs=3,
                                          lr=0.1, lambda_l1=0.5, clip_loss=clip_loss, progress=False)
    assert res.delta_h.shape == tiny.h_shape and res.edit_timesteps == [666, 333]
    assert len(res.losses) == 3 and res.losses[-1] < res.losses[0]
    assert res.l1_losses[0] < res.l1_losses[-1]  # the edit starts from nothing and grows
    assert res.seconds >= res.optimise_seconds > 0
    replay = editing.apply_delta_h(tiny, res.x_T, res.delta_h, t_edit=300, n_steps=STEPS, progress=False)
    torch.testing.assert_close(replay.images, res.images)


def test_per_timestep_shape(tiny, images, clip_loss):
    res = editing.optimize_global_delta_h(tiny, images[:1], SOURCE, TARGET, t_edit=0, n_steps=2, epochs=1,
                                          per_timestep=True, clip_loss=clip_loss, progress=False)
    assert res.delta_h.shape == (2, *tiny.h_shape) and res.edit_timesteps == [500, 0]
    # each step's Δh got its own update
    assert all(res.delta_h[i].abs().sum() > 0 for i in range(2))
    assert not torch.equal(res.delta_h[0], res.delta_h[1])
    with pytest.raises(ValueError, match="delta_h"):  # 2 rows but only 1 edit step
        editing.apply_delta_h(tiny, res.x_T, res.delta_h, t_edit=300, n_steps=2, progress=False)


def test_bad_inputs(tiny, images, x_T, delta_h):
    for t_edit in (-1, 1000, 1.5):
        with pytest.raises(ValueError, match="t_edit"):
            editing.apply_delta_h(tiny, x_T, delta_h, t_edit=t_edit, n_steps=STEPS, progress=False)
    with pytest.raises(ValueError, match="t_edit"):  # above every sampling step: nothing to edit
        editing.apply_delta_h(tiny, x_T, delta_h, t_edit=900, n_steps=STEPS, progress=False)
    with pytest.raises(ValueError, match="delta_h"):
        editing.apply_delta_h(tiny, x_T, torch.zeros(3, 32, 32), t_edit=0, n_steps=STEPS, progress=False)
    with pytest.raises(ValueError, match="strength"):
        editing.apply_delta_h(tiny, x_T, delta_h, t_edit=0, n_steps=STEPS, strength=float("nan"), progress=False)
    with pytest.raises(ValueError, match="identical"):
        editing.optimize_global_delta_h(tiny, images[:1], "face", "Face", t_edit=0, n_steps=2, epochs=1,
                                        progress=False)
    with pytest.raises(ValueError, match="epochs"):
        editing.optimize_global_delta_h(tiny, images[:1], SOURCE, TARGET, t_edit=0, n_steps=2, epochs=0,
                                        progress=False)
    with pytest.raises(ValueError, match="x0"):
        editing.optimize_global_delta_h(tiny, images[:1] * 5, SOURCE, TARGET, t_edit=0, n_steps=2, progress=False)


def test_optimisation_object_equals_its_fields_by_name(tiny, images):
    from asyrp_lib.core.editing import Optimisation

    kw = dict(t_edit=300, n_steps=STEPS, progress=False)
    a = editing.optimize_global_delta_h(tiny, images[:1], SOURCE, TARGET, epochs=1, lr=0.1, **kw)
    b = editing.optimize_global_delta_h(tiny, images[:1], SOURCE, TARGET, optim=Optimisation(epochs=1, lr=0.1), **kw)
    torch.testing.assert_close(a.delta_h, b.delta_h)
    with pytest.raises(TypeError, match="unexpected keyword.*epoch\\b"):
        editing.optimize_global_delta_h(tiny, images[:1], SOURCE, TARGET, epoch=1, **kw)
    with pytest.raises(TypeError, match="unexpected keyword.*previews"):
        editing.apply_delta_h(tiny, a.x_T, a.delta_h, t_edit=300, n_steps=STEPS, previews=True)
