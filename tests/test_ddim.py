"""DDIM from the equations, checked against diffusers' DDIMScheduler and against its own identities."""
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from asyrp_lib.core import ddim


def make_scheduler(**kw):
    return DDIMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                         clip_sample=False, set_alpha_to_one=True, steps_offset=0, **kw)


def test_linear_schedule_matches_diffusers():
    ours = ddim.Schedule.linear()
    ref = DDPMScheduler(beta_schedule="linear", beta_start=1e-4, beta_end=0.02).alphas_cumprod
    assert torch.equal(ours.alphas_cumprod, ref)
    assert torch.equal(ddim.Schedule.from_scheduler(make_scheduler()).alphas_cumprod, ref)
    assert ours.alpha(-1).item() == 1.0
    assert torch.allclose(ours.alpha(torch.tensor([0, 999])), ref[[0, 999]])


@pytest.mark.parametrize("n", [1, 7, 10, 50, 1000])
def test_timesteps_match_diffusers(n):
    s = make_scheduler()
    s.set_timesteps(n)
    assert ddim.timesteps(n) == s.timesteps.tolist()
    assert ddim.timesteps(n)[-1] == 0


@pytest.mark.parametrize("eta", [0.0, 0.3, 1.0])
def test_ddim_step_equals_scheduler_step(eta):
    g = torch.Generator().manual_seed(0)
    sched, schedule = make_scheduler(), ddim.Schedule.linear()
    sched.set_timesteps(10)
    ts = ddim.timesteps(10)
    for t, t_prev in zip(ts, ddim.previous_timesteps(ts)):
        x, eps, noise = (torch.randn(2, 3, 8, 8, generator=g) for _ in range(3))
        ref = sched.step(eps, t, x, eta=eta, variance_noise=noise)
        out = ddim.ddim_step(x, eps, schedule.alpha(t), schedule.alpha(t_prev), eta=eta, noise=noise)
        torch.testing.assert_close(out.x_prev, ref.prev_sample, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out.pred_x0, ref.pred_original_sample, rtol=1e-5, atol=1e-5)


def test_step_is_sqrt_alpha_prev_times_pt_plus_dt():
    g = torch.Generator().manual_seed(1)
    x, eps, eps_edit = (torch.randn(2, 3, 8, 8, generator=g) for _ in range(3))
    a_t, a_prev = torch.tensor(0.3), torch.tensor(0.5)
    sym = ddim.ddim_step(x, eps, a_t, a_prev)
    expected = a_prev.sqrt() * (x - (1 - a_t).sqrt() * eps) / a_t.sqrt() + (1 - a_prev).sqrt() * eps
    torch.testing.assert_close(sym.x_prev, expected)
    # the asymmetric step: the edit enters P_t only (eq. 4)
    asym = ddim.ddim_step(x, eps_edit, a_t, a_prev, eps_direction=eps)
    expected = a_prev.sqrt() * ddim.predicted_x0(x, eps_edit, a_t) + ddim.direction_to_xt(eps, a_prev)
    torch.testing.assert_close(asym.x_prev, expected)
    torch.testing.assert_close(asym.pred_x0, ddim.predicted_x0(x, eps_edit, a_t))
    assert not torch.allclose(asym.x_prev, sym.x_prev)


def test_predicted_x0_recovers_clean_image_from_true_noise():
    g = torch.Generator().manual_seed(2)
    x0, eps = torch.rand(4, 3, 8, 8, generator=g) * 2 - 1, torch.randn(4, 3, 8, 8, generator=g)
    a = ddim.Schedule.linear().alpha(torch.tensor([10, 200, 500, 900]))
    x_t = a.sqrt().view(-1, 1, 1, 1) * x0 + (1 - a).sqrt().view(-1, 1, 1, 1) * eps  # per-sample ᾱ
    torch.testing.assert_close(ddim.predicted_x0(x_t, eps, a), x0, rtol=1e-4, atol=1e-4)


def test_sigma_zero_for_eta_zero_and_ddpm_variance_for_eta_one():
    a_t, a_prev = torch.tensor(0.4), torch.tensor(0.6)
    assert ddim.ddim_sigma(a_t, a_prev, 0.0).item() == 0.0
    beta_tilde = (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)  # DDPM posterior variance
    torch.testing.assert_close(ddim.ddim_sigma(a_t, a_prev, 1.0) ** 2, beta_tilde)


def test_sample_is_batched_and_deterministic(tiny):
    g = torch.Generator().manual_seed(3)
    x_T = torch.randn(3, 3, 32, 32, generator=g)
    ts = ddim.timesteps(5)
    both = ddim.sample(tiny.unet, x_T, ts, tiny.schedule, progress=False)
    one = ddim.sample(tiny.unet, x_T[1:2], ts, tiny.schedule, progress=False)
    torch.testing.assert_close(both[1:2], one, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(both, ddim.sample(tiny.unet, x_T, ts, tiny.schedule, progress=False))
    steps = list(ddim.sample_steps(tiny.unet, x_T, ts, tiny.schedule, progress=False))
    assert [s.t for s in steps] == ts and torch.equal(steps[-1].x_prev, both)


def test_stochastic_sampling_uses_the_generator(tiny):
    x_T = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    ts = ddim.timesteps(4)
    run = lambda seed: ddim.sample(tiny.unet, x_T, ts, tiny.schedule, eta=1.0, progress=False,
                                   generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(run(0), run(0))
    assert not torch.allclose(run(0), run(1))


def test_invert_then_sample_converges_with_steps(tiny, images):
    # With an exact denoiser, DDIM is a first-order ODE solver: the round-trip error falls about
    # linearly with the number of steps (measured max |error|: 0.44, 0.25, 0.11, 0.055 for 10…100 steps).
    model = ddim.gaussian_eps(tiny.schedule)
    errors = []
    for n in (10, 20, 50, 100):
        ts = ddim.timesteps(n)
        x_T = ddim.invert(model, images, ts, tiny.schedule, progress=False)
        rec = ddim.sample(model, x_T, ts, tiny.schedule, progress=False)
        errors.append((rec - images).abs().max().item())
    assert errors == sorted(errors, reverse=True)
    assert errors[-1] < 0.08 and errors[-1] < errors[0] / 5
    assert 0.8 < x_T.std() < 1.2  # x_T is at noise level


def test_invert_then_sample_reconstructs_with_the_tiny_unet(tiny, images):
    # A random U-Net is not a consistent denoiser, so only a short interval round-trips well:
    # measured max |error| 0.0094 over t ≤ 100 with 50 steps (0.08 over t ≤ 200).
    ts = [int(t) for t in torch.linspace(100, 0, 50).round()]
    x_T = ddim.invert(tiny.unet, images, ts, tiny.schedule, progress=False)
    rec = ddim.sample(tiny.unet, x_T, ts, tiny.schedule, progress=False)
    assert (x_T - images).abs().mean() > 0.05
    assert (rec - images).abs().max() < 0.02


def test_bad_input_names_the_argument(tiny):
    s = tiny.schedule
    with pytest.raises(ValueError, match="num_steps"):
        ddim.timesteps(0)
    with pytest.raises(ValueError, match="num_steps"):
        ddim.timesteps(1001)
    with pytest.raises(ValueError, match="t:"):
        s.alpha(1000)
    with pytest.raises(ValueError, match="eta"):
        ddim.ddim_sigma(0.5, 0.6, 1.5)
    with pytest.raises(ValueError, match="eps"):
        ddim.ddim_step(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 5), 0.5, 0.6)
    with pytest.raises(ValueError, match="x_0"):
        ddim.invert(tiny.unet, torch.full((1, 3, 32, 32), 3.0), ddim.timesteps(3), s, progress=False)
    with pytest.raises(ValueError, match="x_0"):
        ddim.invert(tiny.unet, torch.zeros(3, 32, 32), ddim.timesteps(3), s, progress=False)
    with pytest.raises(ValueError, match="x_T"):
        ddim.sample(tiny.unet, torch.zeros(1, 3, 32), ddim.timesteps(3), s, progress=False)
    with pytest.raises(ValueError, match="timesteps"):
        ddim.sample(tiny.unet, torch.zeros(1, 3, 32, 32), [0, 500], s, progress=False)
    with pytest.raises(ValueError, match="timesteps"):
        ddim.sample(tiny.unet, torch.zeros(1, 3, 32, 32), [1000, 0], s, progress=False)
    with pytest.raises(ValueError, match="alphas_cumprod"):
        ddim.Schedule(torch.tensor([1.0, 0.0]))


def test_clipped_sampling_matches_diffusers_and_inversion_never_clips():
    """clip_sample clamps P_t before x_{t-1} is formed (D_t keeps ε), as DDIMScheduler(clip_sample=True)."""
    g = torch.Generator().manual_seed(3)
    sched = DDIMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                          clip_sample=True, set_alpha_to_one=True, steps_offset=0)
    schedule = ddim.Schedule.from_scheduler(sched)
    assert schedule.clip_sample and not ddim.Schedule.linear().clip_sample
    sched.set_timesteps(10)
    ts = ddim.timesteps(10)
    eps_fn = lambda x, t: 0.7 * x.roll(1, dims=-1) - 0.2  # P_t well outside [-1, 1] at high t
    x = torch.randn(2, 3, 8, 8, generator=g)
    ref = x.clone()
    for t in ts:
        ref = sched.step(eps_fn(ref, t), t, ref).prev_sample
    ours = ddim.sample(eps_fn, x, ts, schedule, progress=False)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    unclipped = ddim.sample(eps_fn, x, ts, schedule, progress=False, clip_sample=False)
    assert (unclipped - ours).abs().max() > 0.1  # the clamp acted
    steps = list(ddim.sample_steps(eps_fn, x, ts, schedule, progress=False))
    assert max(float(s.pred_x0.abs().max()) for s in steps) <= 1.0
    # inversion is the same with a clipping schedule and without (it never clips)
    x0 = torch.rand(2, 3, 8, 8, generator=g) * 2 - 1
    torch.testing.assert_close(ddim.invert(eps_fn, x0, ts, schedule, progress=False),
                               ddim.invert(eps_fn, x0, ts, ddim.Schedule.linear(), progress=False))


def test_refined_inversion_is_the_exact_inverse_of_sampling():
    """Fixed-point refinement solves x_t = up(ε(x_t, t)): sampling then undoes each step, so the regeneration
    error falls with the number of iterations (refine=0 is the plain inversion). The exact ε of Gaussian data
    (a smooth "model") with 5 coarse steps: the plain inversion's error is pure discretisation."""
    schedule = ddim.Schedule.linear()
    eps = ddim.gaussian_eps(schedule, variance=0.25)
    ts = ddim.timesteps(5)
    x0 = (0.5 * torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(5))).clamp(-1, 1)
    errors = []
    for k in (0, 1, 3, 10):
        x_T = ddim.invert(eps, x0, ts, schedule, progress=False, refine=k)
        rec = ddim.sample(eps, x_T, ts, schedule, progress=False, clip_sample=False)
        errors.append(float((rec - x0).abs().mean()))
    assert errors[0] > 1e-3, errors  # the plain inversion is visibly off with 5 steps
    assert errors[0] > errors[1] > errors[2] > errors[3], errors
    assert errors[3] < 0.02 * errors[0], errors  # converging towards the exact inverse
    with pytest.raises(ValueError, match="refine"):
        ddim.invert(eps, x0, ts, schedule, progress=False, refine=-1)


def test_ddim_step_draws_its_noise_from_a_generator_given_as_noise():
    x, eps = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(5))
    given = ddim.ddim_step(x, eps, 0.5, 0.7, eta=1.0, noise=z).x_prev
    drawn = ddim.ddim_step(x, eps, 0.5, 0.7, eta=1.0, noise=torch.Generator().manual_seed(5)).x_prev
    torch.testing.assert_close(given, drawn)
