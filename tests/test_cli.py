"""Tests for the asyrp command line: train, edit and intervals end to end on the tiny profile, and bad input."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from _directions import saved_direction
from asyrp_lib.front.cli import main, parse_direction
from asyrp_lib.core.delta_net import DeltaNet


def run(*args, env):
    return subprocess.run([sys.executable, "-m", "asyrp_lib", *args], capture_output=True, text=True, env=env,
                          timeout=300)


@pytest.fixture
def env(tmp_path):
    return {**os.environ, "ASYRP_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1",
            "OMP_NUM_THREADS": "2"}


def write_inputs(folder):
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(folder / "a.png")  # odd size
    Image.fromarray(rng.integers(0, 256, (32, 32, 4), dtype=np.uint8), "RGBA").save(folder / "b.png")
    return folder


@pytest.mark.slow  # trains a direction in a subprocess
def test_train_edit_intervals_end_to_end(tmp_path, env):
    out = tmp_path / "dir"
    r = run("train", "--profile", "tiny", "--device", "cpu", "--source", "face", "--target", "smiling face",
            "--output", str(out), "--n-images", "2", "--steps", "2", "--epochs", "1", "--batch-size", "2",
            "--t-edit", "500", "--t-boost", "0", "--l1-spare", "0.2", env=env)
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stderr and "1 steps" in r.stderr
    meta = json.loads((out / "delta_net.json").read_text())
    assert meta["target"] == "smiling face" and meta["steps"] == 2 and meta["t_edit"] == 500
    assert meta["training"]["l1_spare"] == 0.2 and meta["training"]["l1_target"] == "unedited"

    inputs = write_inputs(tmp_path / "in")
    r = run("edit", "--profile", "tiny", "--device", "cpu", "--direction", f"{out}:-1.5", "--direction", str(out),
            "--input", str(inputs), "--output", str(tmp_path / "edited"), "--compare", str(tmp_path / "grid.png"),
            env=env)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "edited").iterdir()) == ["a.png", "b.png"]
    assert Image.open(tmp_path / "edited" / "a.png").size == (32, 32)
    assert (tmp_path / "grid.png").is_file() and "strengths -1.5, 1" in r.stderr
    assert "centre-cropped" in r.stderr and "composited on white" in r.stderr

    r = run("intervals", "--profile", "tiny", "--device", "cpu", "--source", "face", "--target", "smiling face",
            "--images", str(inputs), "--points", "4", "--edit-lpips", "0.05", "--boost-lpips", "0.02",
            "--output", str(tmp_path / "iv"), env=env)
    assert r.returncode == 0, r.stderr
    lines = dict(line.split(" = ") for line in r.stdout.strip().splitlines())
    saved = json.loads((tmp_path / "iv.json").read_text())
    assert int(lines["t_edit"]) == saved["t_edit"] and int(lines["t_boost"]) == saved["t_boost"]
    assert saved["timesteps"] == [0, 250, 500, 750] and (tmp_path / "iv.png").stat().st_size > 1000


def test_bad_input_exits_2_with_a_clear_message(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ASYRP_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("ASYRP_CACHE", str(tmp_path / "cache"))

    def err(*argv):
        code = main(list(argv))
        return code, capsys.readouterr().err

    code, msg = err("train", "--profile", "tiny", "--source", "face", "--target", "Face", "--output", str(tmp_path))
    assert code == 2 and "identical" in msg and "Traceback" not in msg
    code, msg = err("edit", "--profile", "tiny", "--direction", "smiling", "--input", "x.png", "--output", "o")
    assert code == 2 and "'smiling' is neither a direction folder nor the name of a shipped direction" in msg
    assert "available: none shipped yet" in msg
    DeltaNet((32, 16, 16)).save(tmp_path / "data" / "directions" / "glasses")
    code, msg = err("edit", "--profile", "tiny", "--direction", "smile", "--input", "x.png", "--output", "o")
    assert code == 2 and "available: glasses" in msg
    assert parse_direction("glasses:-2") == (tmp_path / "data" / "directions" / "glasses", -2.0)
    code, msg = err("edit", "--profile", "tiny", "--device", "cpu", "--direction", "glasses", "--input",
                    str(tmp_path), "--output", str(tmp_path / "o"), "--t-edit", "500", "--t-boost", "0")
    assert code == 2 and "no image files" in msg
    (tmp_path / "bad.png").write_text("not an image")
    code, msg = err("edit", "--profile", "tiny", "--device", "cpu", "--direction", "glasses", "--input",
                    str(tmp_path / "bad.png"), "--output", str(tmp_path / "o"))
    assert code == 2 and "bad.png: not a readable image file" in msg
    Image.new("RGB", (32, 32)).save(tmp_path / "ok.png")
    code, msg = err("edit", "--profile", "tiny", "--device", "cpu", "--direction", "glasses:7", "--input",
                    str(tmp_path / "ok.png"), "--output", str(tmp_path / "o"), "--t-edit", "500", "--t-boost", "0")
    assert code == 2 and "strength" in msg and "[-5, 5]" in msg
    DeltaNet((8, 4, 4)).save(tmp_path / "small")
    code, msg = err("edit", "--profile", "tiny", "--device", "cpu", "--direction", str(tmp_path / "small"),
                    "--input", str(tmp_path / "ok.png"), "--output", str(tmp_path / "o"), "--t-edit", "500",
                    "--t-boost", "0", "--steps", "4")
    assert code == 2 and "h has shape 32×16×16" in msg
    code, msg = err("edit", "--profile", "tiny", "--device", "cpu", "--direction", "glasses", "--input",
                    str(tmp_path / "ok.png"), "--output", str(tmp_path / "o"), "--steps", "4")
    assert code == 2 and "--t-edit, --t-boost: not given" in msg
    code, msg = err("train", "--profile", "nope-not-a-profile", "--source", "a", "--target", "b", "--output", "o")
    assert code == 2 and "unknown profile" in msg
    # a timestep above the schedule's T - 1 is refused once the model (and so T) is known
    code, msg = err("edit", "--profile", "tiny", "--device", "cpu", "--direction", "glasses", "--input",
                    str(tmp_path / "ok.png"), "--output", str(tmp_path / "o"), "--t-edit", "1200", "--t-boost", "0")
    assert code == 2 and "--t-edit: expected a timestep in [0, 999]" in msg
    with pytest.raises(SystemExit) as exc:  # argparse: a share must lie in [0, 1)
        main(["train", "--source", "a", "--target", "b", "--output", "o", "--l1-spare", "1"])
    assert exc.value.code == 2 and "--l1-spare: expected a share in [0, 1), got '1'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # argparse: not a timestep at all
        main(["edit", "--direction", "x", "--input", "i", "--output", "o", "--t-edit", "-5"])
    assert exc.value.code == 2 and "expected an integer timestep ≥ 0" in capsys.readouterr().err


def test_demo_and_evaluate_on_the_tiny_profile(tmp_path, tiny, capsys):
    d = saved_direction(tmp_path / "smiling", tiny)
    grid = tmp_path / "demo.png"
    assert main(["demo", "--profile", "tiny", "--device", "cpu", "--direction", str(d), "--direction", f"{d}:-1",
                 "--n", "4", "--output", str(grid)]) == 0
    w, h = Image.open(grid).size
    assert abs(w / h - 4 / 3) < 0.05  # 4 faces across; 3 rows: the faces, strength +1, strength -1
    assert "rows = the faces, then smiling, smiling" in capsys.readouterr().err

    out = tmp_path / "m.json"
    assert main(["evaluate", "--profile", "tiny", "--device", "cpu", "--direction", str(d), "--attribute", "smile",
                 "--value", "smiling", "--n", "2", "--output", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads(out.read_text())
    assert printed == saved and saved["n"] == 2 and saved["t_edit"] == 500
    for key in ("success", "others_kept", "lpips", "s_dir", "face_rate"):
        assert key in saved and (saved[key] is None or 0.0 <= saved[key] <= 1.0 or key == "s_dir")


def test_demo_and_evaluate_bad_input(tmp_path, tiny, capsys, monkeypatch):
    monkeypatch.setenv("ASYRP_DATA", str(tmp_path / "empty"))
    assert main(["demo", "--profile", "tiny", "--output", str(tmp_path / "x.png")]) == 2
    assert "no shipped direction" in capsys.readouterr().err
    d = saved_direction(tmp_path / "dir", tiny)
    assert main(["demo", "--profile", "tiny", "--direction", str(d), "--output", str(tmp_path / "x.jpg")]) == 2
    assert "--output" in capsys.readouterr().err
    assert main(["evaluate", "--profile", "tiny", "--direction", str(d), "--attribute", "mood",
                 "--value", "happy"]) == 2
    assert "--attribute" in capsys.readouterr().err
    assert main(["evaluate", "--profile", "tiny", "--direction", str(d), "--attribute", "smile",
                 "--value", "ecstatic"]) == 2
    assert "--value: expected one of frowning, neutral, smiling" in capsys.readouterr().err


KILL_AT = """
import os, sys
import asyrp_lib.core.train as train
from asyrp_lib.front import cli
real, calls = train.loss_step, []
def dying(*a, **k):
    calls.append(1)
    if len(calls) == int(os.environ["DIE_AT"]):
        os._exit(9)  # a hard death mid-epoch: no exception handler, no last checkpoint
    return real(*a, **k)
train.loss_step = dying
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.slow  # trains a direction in a subprocess
def test_asyrp_train_killed_mid_epoch_resumes_from_the_last_in_epoch_checkpoint(tmp_path, env):
    out = tmp_path / "dir"
    args = ["train", "--profile", "tiny", "--device", "cpu", "--source", "face", "--target", "smiling face",
            "--output", str(out), "--n-images", "4", "--steps", "4", "--epochs", "1", "--batch-size", "2",
            "--t-edit", "250", "--t-boost", "0", "--save-every", "1e-9"]  # 2 batches × 3 steps; save after each
    r = subprocess.run([sys.executable, "-c", KILL_AT, *args], capture_output=True, text=True, timeout=300,
                       env={**env, "DIE_AT": "5"})
    assert r.returncode == 9, r.stderr
    meta = json.loads((out / "delta_net.json").read_text())
    assert meta["training"]["steps_done"] == 4 and meta["training"]["epochs_done"] == 0  # mid-epoch checkpoint
    r = run(*args[:-2], "--resume", env=env)
    assert r.returncode == 0, r.stderr
    history = json.loads((out / "history.json").read_text())
    assert [h["step"] for h in history] == [1, 2, 3, 4, 5, 6] and "6 steps" in r.stderr
