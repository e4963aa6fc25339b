"""The naive edits (notebook 04): x_T optimisation through a checkpointed sampler, the ε-shift, and
the P_t / D_t interference identity of eq. 2."""
import pytest
import torch

from asyrp_lib.core import ddim, naive
from asyrp_lib.models.clip import DirectionalCLIPLoss

SOURCE, TARGET = "face", "smiling face"


@pytest.fixture(scope="module")
def clip_loss(tiny):
    return DirectionalCLIPLoss(tiny.clip, SOURCE, TARGET)


def test_gradient_reaches_x_T_and_checkpointing_gives_the_same_gradient(tiny, images, clip_loss):
    ts = ddim.timesteps(2)
    x_T = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    grads, outs = [], []
    for ckpt in (True, False):
        z = x_T.clone().requires_grad_(True)
        out = naive.sample_with_grad(tiny.unet, z, ts, tiny.schedule, checkpointing=ckpt)
        clip_loss(out, images[:2]).sum().backward()
        grads.append(z.grad)
        outs.append(out.detach())
    assert torch.isfinite(grads[0]).all() and grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-7)
    # the differentiable sampler is the ordinary DDIM sampler
    torch.testing.assert_close(outs[0], ddim.sample(tiny.unet, x_T, ts, tiny.schedule, progress=False),
                               rtol=0, atol=1e-6)


def test_optimize_xT_lowers_the_loss(tiny, images, clip_loss):
    res = naive.optimize_xT(tiny, images[:2], SOURCE, TARGET, n_steps=2, iters=3, lr=0.05, lambda_l1=0.1,
                            clip_loss=clip_loss, progress=False)
    assert len(res.losses) == 3 and res.losses[-1] < res.losses[0]
    assert res.images.shape == res.x_T.shape == (2, 3, 32, 32)
    assert not torch.equal(res.x_T, res.x_T_init)
    x_T = ddim.invert(tiny.unet, images[:2], res.timesteps, tiny.schedule, progress=False)
    torch.testing.assert_close(res.x_T_init, x_T)
    torch.testing.assert_close(res.reconstruction, ddim.sample(tiny.unet, x_T, res.timesteps, tiny.schedule,
                                                               progress=False), rtol=0, atol=1e-6)


@pytest.mark.parametrize("t,t_prev", [(980, 960), (600, 400), (50, 0), (0, -1)])
def test_interference_identity(tiny, t, t_prev):
    g = torch.Generator().manual_seed(t)
    x_t, eps, d = (torch.randn(2, 3, 8, 8, generator=g) for _ in range(3))
    a_t, a_p = tiny.schedule.alpha(t), tiny.schedule.alpha(t_prev)
    r = naive.interference(x_t, eps, d, a_t, a_p)
    step = ddim.ddim_step(x_t, eps + d, a_t, a_p).x_prev - ddim.ddim_step(x_t, eps, a_t, a_p).x_prev
    torch.testing.assert_close(r.net, step, rtol=0, atol=1e-5)
    # closed forms: sqrt(ᾱ_{t-1})ΔP_t = -sqrt(ᾱ_{t-1}(1-ᾱ_t)/ᾱ_t) Δε, ΔD_t = sqrt(1-ᾱ_{t-1}) Δε
    a_t, a_p = float(a_t), float(a_p)
    torch.testing.assert_close(r.delta_p, -(a_p ** 0.5) * (1 - a_t) ** 0.5 / a_t ** 0.5 * d, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(r.delta_d, (1 - a_p) ** 0.5 * d, rtol=1e-5, atol=1e-6)
    assert r.coef_p < 0 <= r.coef_d
    # opposite signs: P_t moves against Δε, D_t along it
    assert (r.delta_p * r.delta_d <= 0).all()
    assert (torch.sign(r.delta_p) == -torch.sign(d)).all()
    if t_prev >= 0:
        assert (torch.sign(r.delta_d) == torch.sign(d)).all()
        assert 0 < r.cancellation < 1


def test_interference_cancels_more_with_more_steps(tiny):
    c50 = naive.interference_coefficients(tiny.schedule, ddim.timesteps(50))
    for t, cp, cd, net in list(zip(c50["t"], c50["coef_p"], c50["coef_d"], c50["net"]))[:-1]:
        assert cp < 0 < cd and abs(net) < abs(cp)
        if t >= 200:  # where the edit acts, ≥ 75 % of the P_t change is undone by D_t
            assert abs(net) < 0.25 * abs(cp)
    c10 = naive.interference_coefficients(tiny.schedule, ddim.timesteps(10))
    # at t = 500 a unit Δε moves x_{t-1} by ~0.6 with 10 steps and ~0.1 with 50
    assert abs(c50["net"][c50["t"].index(500)]) < 0.3 * abs(c10["net"][c10["t"].index(500)])


def test_epsilon_shift_edit(tiny, images, clip_loss):
    res = naive.epsilon_shift_edit(tiny, images[:2], SOURCE, TARGET, t_edit=300, n_steps=3, epochs=2, lr=0.01,
                                   clip_loss=clip_loss, progress=False)
    assert res.delta_eps.shape == (3, 32, 32) and res.delta_eps.abs().sum() > 0
    assert res.edit_timesteps == [666, 333] and len(res.losses) == 2
    out = naive.apply_delta_eps(tiny, res.x_T, res.delta_eps, t_edit=300, n_steps=3, progress=False)
    torch.testing.assert_close(out.images, res.images)
    zero = naive.apply_delta_eps(tiny, res.x_T, torch.zeros(3, 32, 32), t_edit=300, n_steps=3, progress=False)
    torch.testing.assert_close(zero.images, ddim.sample(tiny.unet, res.x_T, ddim.timesteps(3), tiny.schedule,
                                                        progress=False), rtol=0, atol=1e-6)
    # in P_t only the same Δε acts much more strongly than in both terms (no cancellation)
    asym = naive.apply_delta_eps(tiny, res.x_T, res.delta_eps * 10, t_edit=300, n_steps=3, symmetric=False,
                                 progress=False)
    sym = naive.apply_delta_eps(tiny, res.x_T, res.delta_eps * 10, t_edit=300, n_steps=3, progress=False)
    assert (asym.images - zero.images).norm() > (sym.images - zero.images).norm()


def test_bad_inputs(tiny, images):
    with pytest.raises(ValueError, match="identical"):
        naive.optimize_xT(tiny, images[:1], "face", "face", n_steps=2, iters=1, progress=False)
    with pytest.raises(ValueError, match="n_steps"):
        naive.optimize_xT(tiny, images[:1], SOURCE, TARGET, n_steps=0, iters=1, progress=False)
    with pytest.raises(ValueError, match="x0"):
        naive.optimize_xT(tiny, images[:1] * 3, SOURCE, TARGET, n_steps=2, iters=1, progress=False)
    x_T = torch.randn(1, 3, 32, 32)
    with pytest.raises(ValueError, match="delta_eps"):
        naive.apply_delta_eps(tiny, x_T, torch.zeros(3, 16, 16), t_edit=0, n_steps=2, progress=False)
    with pytest.raises(ValueError, match="t_edit"):
        naive.apply_delta_eps(tiny, x_T, torch.zeros(3, 32, 32), t_edit=1000, n_steps=2, progress=False)
    with pytest.raises(ValueError, match="delta_eps"):
        naive.interference(x_T, x_T, torch.zeros(2, 3, 32, 32), 0.5, 0.6)


def test_grouped_settings_are_accepted_and_unknown_keywords_refused(tiny, images):
    from asyrp_lib.core.editing import Optimisation
    from asyrp_lib.core.naive import XTOptimisation

    a = naive.optimize_xT(tiny, images[:1], SOURCE, TARGET, n_steps=2, iters=2, lr=0.05, progress=False)
    b = naive.optimize_xT(tiny, images[:1], SOURCE, TARGET, n_steps=2, optim=XTOptimisation(iters=2, lr=0.05),
                          progress=False)
    assert a.losses == pytest.approx(b.losses)
    with pytest.raises(TypeError, match="unexpected keyword.*iter\\b"):
        naive.optimize_xT(tiny, images[:1], SOURCE, TARGET, iter=2)
    with pytest.raises(TypeError, match="asymmetric"):
        naive.epsilon_shift_edit(tiny, images[:1], SOURCE, TARGET, t_edit=300, asymmetric=True)
    with pytest.raises(ValueError, match="epochs"):
        naive.epsilon_shift_edit(tiny, images[:1], SOURCE, TARGET, t_edit=300, optim=Optimisation(epochs=0))
