"""scripts/twin_h_swap.py: the h-swap diagnostic on the tiny profile (random weights: shapes and invariants only)."""

import pytest
import torch
from _scripts import load_script


@pytest.fixture(scope="module")
def twin():
    return load_script("scripts/twin_h_swap.py")


def test_identical_twins_change_nothing(tiny, twin):
    # a twin that differs in nothing has the same h at every step: the swap is Δh = 0, the reconstruction
    rows = twin.twin_swap(tiny, "glasses", "no", "no", n=3, t_edits=(0,), scales=(1.0,), n_steps=4)
    assert [(r["asymmetric"], r["t_edit"]) for r in rows] == [(True, 0), (False, 0)]
    # both are the plain reconstruction (asymmetric and symmetric agree when Δh = 0)
    assert rows[0]["lpips"] == pytest.approx(rows[1]["lpips"], abs=1e-6)
    assert rows[0]["others_kept"] == rows[1]["others_kept"] and rows[0]["success"] == rows[1]["success"]


def test_rows_for_every_setting_and_a_real_swap(tiny, twin):
    rows = twin.twin_swap(tiny, "smile", 0.0, 0.9, n=2, t_edits=(500, 0), scales=(1.0, 2.0), n_steps=4)
    assert len(rows) == 2 * 2 * 2
    assert all(0 <= r["success"] <= 1 and 0 <= r["others_kept"] <= 1 and r["n"] == 2 for r in rows)
    torch.manual_seed(0)
    h = twin.h_trajectory(tiny, torch.randn(1, 3, tiny.image_size, tiny.image_size),
                          twin.editing.schedule_steps(tiny, 4), 0)
    assert len(h) == 4 and all(x.shape[1:] == tuple(tiny.hspace.h_shape()) for x in h)


def test_shared_noise_reads_the_twin_on_the_faces_own_trajectory(tiny, twin):
    rows = twin.twin_swap(tiny, "glasses", "no", "no", n=2, t_edits=(0,), scales=(1.0,), n_steps=4,
                          shared_noise=True)  # identical twins: Δh = 0 again, the plain reconstruction
    assert rows[0]["lpips"] == pytest.approx(rows[1]["lpips"], abs=1e-6) and all(r["shared_noise"] for r in rows)
    torch.manual_seed(1)
    size, ts = tiny.image_size, twin.editing.schedule_steps(tiny, 4)
    x_T, shift = torch.randn(1, 3, size, size), 0.5 * torch.randn(1, 3, size, size)
    plain = twin.h_trajectory(tiny, x_T, ts, 0)
    plain_again, shifted = twin.h_trajectory(tiny, x_T, ts, 0, shift=shift)
    assert all(torch.equal(a, b) for a, b in zip(plain, plain_again))  # one pass gives the plain h as well
    t = int(ts[0])  # the first step: x_t is x_T itself, so the twin's h is h(x_T + sqrt(ᾱ_t)·shift)
    want = tiny.hspace.encode(x_T + tiny.schedule.alpha(t).sqrt() * shift, t).h
    assert torch.allclose(shifted[0], want, atol=1e-5) and not torch.allclose(shifted[0], plain[0], atol=1e-3)
    assert len(shifted) == len(plain) == 4


def test_main_refuses_a_profile_without_the_oracle(twin):
    with pytest.raises(SystemExit, match="toy"):
        twin.main(["--profile", "tiny", "--n", "1"])


@pytest.mark.parametrize("argv, message", [
    (["--source", "big"], "--source: smile is a number"),
    (["--target", "1.5"], "--target: smile is a number"),
    (["--attribute", "glasses", "--source", "maybe", "--target", "yes"], "--source: glasses is one of no, yes"),
])
def test_main_names_a_bad_value(twin, argv, message):
    with pytest.raises(SystemExit, match=message):
        twin.main(argv)
