"""Eq. (6), the one reverse process: the phase of every step, its boundaries (ARCHITECTURE.md §5), fresh noise in the
boosting steps and determinism elsewhere; inversion against diffusers' DDIMInverseScheduler."""
import torch
from diffusers import DDIMInverseScheduler

from asyrp_lib.core import ddim
from asyrp_lib.core.process import DeltaH, phase_of, reverse_process, run_process

TS = ddim.timesteps(10)  # [900, 800, …, 0]


def test_phases_and_their_boundaries():
    phases = {t: phase_of(t, 600, 300) for t in TS}
    assert [t for t in TS if phases[t] == "edit"] == [900, 800, 700, 600]  # [T, t_edit]: t_edit itself edits
    assert [t for t in TS if phases[t] == "plain"] == [500, 400, 300]  # (t_edit, t_boost]: t_boost is plain
    assert [t for t in TS if phases[t] == "boost"] == [200, 100, 0]  # (t_boost, 0]
    assert phase_of(0, 0, 0) == "edit" and phase_of(5, None, 0) == "plain" and phase_of(0, None, 1) == "boost"


def test_the_process_runs_each_phase_as_eq6_says(tiny):
    """Edit steps: eq. (4) with ε(x_t | Δh) in P_t and ε in D_t; plain steps: DDIM η = 0; boosting steps: η = 1
    with noise drawn afresh at each step from the generator — rebuilt here step by step with ddim_step."""
    hs, sched = tiny.hspace, tiny.schedule
    x_T = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    dh = 0.3 * torch.randn(tiny.h_shape, generator=torch.Generator().manual_seed(1))
    seen = [(s.t, s.phase) for s in reverse_process(hs, x_T, TS, sched, edit=DeltaH(dh), t_edit=600, t_boost=300,
                                                    generator=torch.Generator().manual_seed(2))]
    assert seen[-1] == (-1, "done") and [p for _, p in seen[:-1]] == [phase_of(t, 600, 300) for t in TS]
    out, _, _ = run_process(hs, x_T, TS, sched, edit=DeltaH(dh), t_edit=600, t_boost=300,
                            generator=torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(2)
    x = x_T
    with torch.no_grad():
        for t, t_prev in zip(TS, ddim.previous_timesteps(TS)):
            a, a_prev = sched.alpha(t), sched.alpha(t_prev)
            if t >= 600:
                eps_edit, eps = hs.eps(x, t, dh.unsqueeze(0))
                x = ddim.ddim_step(x, eps_edit, a, a_prev, eps_direction=eps).x_prev
            elif t >= 300:
                x = ddim.ddim_step(x, hs.eps(x, t), a, a_prev).x_prev
            else:
                z = torch.randn(x.shape, generator=g)
                x = ddim.ddim_step(x, hs.eps(x, t), a, a_prev, eta=1.0, noise=z).x_prev
    torch.testing.assert_close(out, x, atol=1e-4, rtol=1e-4)


def test_boosting_noise_is_fresh_and_the_rest_is_deterministic(tiny):
    hs, sched = tiny.hspace, tiny.schedule
    x_T = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    run = lambda seed, t_boost: run_process(hs, x_T, TS, sched, t_boost=t_boost,
                                            generator=torch.Generator().manual_seed(seed))[0]
    torch.testing.assert_close(run(0, 0), run(1, 0))  # no boosting (t_boost = 0): η = 0 everywhere, no noise used
    torch.testing.assert_close(run(0, 0), ddim.sample(tiny.unet, x_T, TS, sched, progress=False))
    torch.testing.assert_close(run(5, 300), run(5, 300))  # seeded: repeatable
    assert (run(5, 300) - run(6, 300)).abs().max() > 1e-3  # another seed, other noise
    # the steps before t_boost are the same whatever the noise
    keep = lambda seed: [s.x_t for s in reverse_process(hs, x_T, TS, sched, t_boost=300,
                                                        generator=torch.Generator().manual_seed(seed))]
    a, b = keep(5), keep(6)
    for i, t in enumerate(TS):
        same = torch.allclose(a[i], b[i])
        assert same == (t >= 200), t  # the step at t = 300 is plain; x_100 is the first latent a boosting step made


def test_inversion_matches_diffusers_ddim_inverse_scheduler(tiny):
    """Same grid, η = 0, the model asked at the latent's own level (as the reference Asyrp code does): the update
    is diffusers' DDIMInverseScheduler.step to float rounding."""
    inv = DDIMInverseScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                               clip_sample=False, set_alpha_to_one=True, steps_offset=0)
    inv.set_timesteps(10)
    x0 = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(4)) * 2 - 1
    ours = ddim.invert(tiny.unet, x0, TS, tiny.schedule, progress=False)
    x, level = x0, 0
    with torch.no_grad():
        for t in inv.timesteps.tolist():
            eps = ddim.model_eps(tiny.unet, x, level)  # ε at the level x is at (t = 0 for x_0)
            x = inv.step(eps, t, x).prev_sample
            level = t
    assert inv.timesteps.tolist() == sorted(TS)
    torch.testing.assert_close(ours, x, atol=1e-4, rtol=1e-4)
