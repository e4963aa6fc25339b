"""Tests for asyrp_lib.core.strength: a direction's strength chosen on fresh samples, and its place in training."""
import json

import pytest
import torch

from asyrp_lib.core import strength as st
from asyrp_lib.core.delta_net import DeltaNet
from asyrp_lib.core.train import PAPER_RECIPE, STATE_NAME, TrainConfig, train_direction
from asyrp_lib.models.profiles import TOY_RECIPE

GRID = st.STRENGTH_GRID


def measured(shares: dict):
    """A measure that reads ``shares`` and records which strengths it was asked for."""
    asked = []

    def measure(s):
        asked.append(s)
        return shares[s]
    return measure, asked


def test_walks_down_from_one_while_the_share_holds():
    measure, asked = measured(dict(zip(GRID, (0.3, 0.6, 0.85, 0.9, 0.95, 1.0, 1.0))))
    s, shares, reached = st.choose_from_shares(measure, 0.8)
    # 0.8 lies 0.8 of the way from 0.6 (at 0.5) to 0.85 (at 0.7): 0.5 · 1.4^0.8 in log strength
    assert reached and s == pytest.approx(0.5 * 1.4 ** 0.8, abs=0.005)
    assert asked == [1.0, 0.7, 0.5]  # stops at the first strength below the share; 0.35 is never edited
    assert shares == {1.0: 0.9, 0.7: 0.85, 0.5: 0.6}


def test_walks_up_until_the_share_is_reached():
    measure, asked = measured(dict(zip(GRID, (0.1, 0.2, 0.4, 0.6, 0.75, 0.82, 0.9))))
    s, _, reached = st.choose_from_shares(measure, 0.8)
    assert reached and 1.4 < s < 2.0 and s == pytest.approx(1.4 * (2.0 / 1.4) ** (5 / 7), abs=0.005)
    assert asked == [1.0, 1.4, 2.0]


def test_a_share_reached_exactly_at_a_grid_strength_is_that_strength():
    measure, _ = measured(dict(zip(GRID, (0.1, 0.2, 0.4, 0.8, 0.9, 0.9, 0.9))))
    assert st.choose_from_shares(measure, 0.8)[0] == 1.0
    measure, asked = measured(dict(zip(GRID, (0.85, 0.9, 0.9, 0.95, 1.0, 1.0, 1.0))))
    assert st.choose_from_shares(measure, 0.8)[0] == 0.35 and asked == [1.0, 0.7, 0.5, 0.35]  # the grid's floor


def test_crossing_is_linear_in_log_strength_and_refuses_a_bad_bracket():
    assert st.crossing((1.0, 0.5), (4.0, 1.0), 0.75) == 2.0  # halfway in log strength
    assert st.crossing((1.0, 0.5), (2.0, 0.9), 0.9) == 2.0
    with pytest.raises(ValueError, match="bracket"):
        st.crossing((1.0, 0.85), (2.0, 0.9), 0.8)
    with pytest.raises(ValueError, match="bracket"):
        st.crossing((2.0, 0.5), (1.0, 0.9), 0.8)


def test_where_no_strength_reaches_the_share_f_t_is_kept_as_trained():
    measure, asked = measured(dict(zip(GRID, (0.1, 0.2, 0.3, 0.40, 0.52, 0.55, 0.50))))
    s, shares, reached = st.choose_from_shares(measure, 0.8)
    assert not reached and s == 1.0  # a larger strength would only change more of each face
    assert asked == [1.0, 1.4, 2.0, 2.8]
    cal = st.StrengthCalibration(strength=s, share=0.8, n=64, candidates=40, shares=shares, reached=reached)
    assert "kept as trained" in cal.describe() and "0.55 at 2" in cal.describe()


def test_grid_without_one_starts_nearest_it():
    measure, asked = measured({0.5: 0.2, 0.9: 0.9, 3.0: 1.0})
    assert st.choose_from_shares(measure, 0.8, grid=(3.0, 0.5, 0.9))[0] == st.crossing((0.5, 0.2), (0.9, 0.9), 0.8)
    assert asked == [0.9, 0.5]
    with pytest.raises(ValueError, match="positive strengths"):
        st.choose_from_shares(measure, 0.8, grid=(0.0, 1.0))


def test_scaled_copy_edits_as_that_strength_and_leaves_the_original():
    torch.manual_seed(0)
    net = DeltaNet((8, 4, 4), metadata={"source": "face"})
    torch.nn.init.normal_(net.conv_out.weight)
    torch.nn.init.normal_(net.conv_out.bias)
    h, t = torch.randn(3, 8, 4, 4), torch.tensor([900, 500, 100])
    before = net(h, t).detach()
    big = net.scaled(1.4)
    assert torch.allclose(big(h, t), 1.4 * before, atol=1e-5)
    assert torch.equal(net(h, t), before) and "strength_factor" not in net.metadata
    assert big.metadata["strength_factor"] == pytest.approx(1.4) and big.metadata["source"] == "face"
    assert big.scaled(0.5).metadata["strength_factor"] == pytest.approx(0.7)
    with pytest.raises(ValueError, match="finite"):
        net.scaled(float("nan"))


def test_the_toy_recipe_chooses_the_strength_and_the_papers_does_not():
    assert TOY_RECIPE.strength_share == 0.8 and PAPER_RECIPE.strength_share == 0.0
    assert "strength chosen" in TOY_RECIPE.describe() and "strength" not in PAPER_RECIPE.describe()

    class P:
        recipe = TOY_RECIPE
    assert TrainConfig().resolved(P).strength_share == 0.8
    assert TrainConfig(strength_share=0.0).resolved(P).strength_share == 0.0
    assert TrainConfig(recipe="paper").resolved(P).strength_share == 0.0
    with pytest.raises(ValueError, match="strength_share"):
        TrainConfig(strength_share=1.5).resolved(P).validate()


BASE = dict(n_steps=4, t_edit=500, t_boost=0, batch_size=2)


def test_training_bakes_the_chosen_strength_into_the_saved_direction(tiny, images, tmp_path, monkeypatch):
    calls = []

    def fake(profile, direction, source, target, **kw):  # what the measurement would have found
        calls.append(kw)
        return st.StrengthCalibration(strength=1.4, share=kw["share"], n=kw["n"], candidates=30,
                                      shares={1.0: 0.7, 1.4: 0.83}, reached=True)
    monkeypatch.setattr(st, "calibrate_strength", fake)
    cfg = TrainConfig(**BASE, strength_share=0.8, strength_samples=40, seed=3)
    res = train_direction(tiny, cfg, tmp_path / "out", images=images[:2], progress=False, cache_dir=tmp_path / "c")
    assert calls[0]["share"] == 0.8 and calls[0]["n"] == 40 and calls[0]["t_edit"] == 500
    assert calls[0]["seed"] == st.CALIBRATION_SEED + 3  # fresh samples, not the training seed's
    assert res.calibration.strength == 1.4
    raw = torch.load(tmp_path / "out" / STATE_NAME, weights_only=True)["net"]  # f_t as trained, for resuming
    saved = DeltaNet.load(tmp_path / "out")
    assert torch.allclose(saved.conv_out.weight, 1.4 * raw["conv_out.weight"])
    assert torch.allclose(saved.conv_out.bias, 1.4 * raw["conv_out.bias"])
    assert torch.equal(saved.conv_in.weight, raw["conv_in.weight"])
    meta = json.loads((tmp_path / "out" / "delta_net.json").read_text())
    assert meta["strength_calibration"]["strength"] == 1.4 and meta["strength_calibration"]["shares"]["1.4"] == 0.83
    assert meta["strength_factor"] == pytest.approx(1.4) and meta["training"]["strength_share"] == 0.8
    # resuming a finished run chooses again from f_t as trained: the factor is not applied twice
    again = train_direction(tiny, cfg, tmp_path / "out", resume=True, progress=False, cache_dir=tmp_path / "c")
    assert torch.allclose(again.delta_net.conv_out.weight, 1.4 * raw["conv_out.weight"])


def test_without_a_share_nothing_is_measured(tiny, images, tmp_path, monkeypatch):
    monkeypatch.setattr(st, "calibrate_strength", lambda *a, **k: pytest.fail("measured without a share"))
    res = train_direction(tiny, TrainConfig(**BASE), tmp_path / "out", images=images[:2], progress=False,
                          cache_dir=tmp_path / "c")  # the tiny profile's recipe is the paper's: share 0
    assert res.calibration is None and "strength_calibration" not in DeltaNet.read_metadata(tmp_path / "out")


def test_too_few_samples_without_the_target_keep_strength_one(tiny, tmp_path):
    # the tiny profile's random CLIP reads every sample one way; whichever, the share asked of a direction that
    # cannot be measured is not pretended
    net = DeltaNet(tiny.h_shape)
    cal = st.calibrate_strength(tiny, net, "face", "smiling face", t_edit=500, t_boost=0, n_steps=4, n=6,
                                progress=False)
    assert cal.strength == 1.0 and not cal.reached and cal.candidates < st.MIN_CANDIDATES and cal.shares == {}
    assert "too few" in cal.describe()
    with pytest.raises(ValueError, match="share: expected a share in \\(0, 1\\)"):  # every strength reaches 0
        st.calibrate_strength(tiny, net, "face", "smiling face", t_edit=500, t_boost=0, n_steps=4, n=6, share=0.0)


@pytest.mark.slow
def test_on_the_toy_world_the_chosen_strength_is_the_smallest_reaching_the_share():
    """The shipped smile direction, 32 fresh toy samples at 10 steps: CLIP's share grows with the strength, and
    the strength kept is the smallest measured one at which it reaches 0.8."""
    from asyrp_lib.core.delta_net import shipped_directions
    from asyrp_lib.models.profiles import load_profile

    profile = load_profile("toy", device="cpu")
    folder = shipped_directions()["smiling"]
    meta = DeltaNet.read_metadata(folder)
    cal = st.calibrate_strength(profile, str(folder), meta["source"], meta["target"], t_edit=meta["t_edit"],
                                t_boost=meta["t_boost"], n_steps=10, n=32, share=0.8, progress=False)
    assert cal.candidates >= st.MIN_CANDIDATES, cal
    ordered = [cal.shares[s] for s in sorted(cal.shares)]
    assert ordered[-1] > ordered[0] and len(ordered) >= 2, cal  # editing more moves more faces to the target
    assert cal.reached, cal
    below = [s for s in cal.shares if s < cal.strength]
    above = [s for s in cal.shares if s >= cal.strength]
    assert all(cal.shares[s] < 0.8 for s in below) and all(cal.shares[s] >= 0.8 for s in above), cal
    assert above and (below or cal.strength == min(GRID)), cal


def test_the_command_line_takes_the_share_and_bakes_the_strength(tmp_path, monkeypatch, capsys):
    from asyrp_lib.front.cli import main

    with pytest.raises(SystemExit) as exc:  # a share lies in [0, 1)
        main(["train", "--source", "a", "--target", "b", "--output", "o", "--strength-share", "1"])
    assert exc.value.code == 2 and "--strength-share: expected a share in [0, 1)" in capsys.readouterr().err
    monkeypatch.setenv("ASYRP_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "dir"
    code = main(["train", "--profile", "tiny", "--device", "cpu", "--source", "face", "--target", "smiling face",
                 "--output", str(out), "--n-images", "2", "--steps", "2", "--epochs", "1", "--batch-size", "2",
                 "--t-edit", "500", "--t-boost", "0", "--strength-share", "0.5"])
    err = capsys.readouterr().err
    assert code == 0 and "strength for a CLIP share of 0.5" in err and "strength 1 baked in" in err, err
    meta = DeltaNet.read_metadata(out)
    assert meta["training"]["strength_share"] == 0.5 and meta["strength_calibration"]["share"] == 0.5
