"""The command line as a new user meets it: every error names the flag the user typed (``--t-edit``, never the
library's ``t_edit``), ``asyrp train --resume`` on a folder with nothing to resume says so, and ``asyrp edit`` on a
folder holding unreadable files edits the readable ones, lists the others and exits non-zero."""
import argparse
import re

import pytest
from PIL import Image

from _directions import saved_direction
from asyrp_lib.front.cli import _flag_message, main
from asyrp_lib.core.delta_net import DeltaNet

TINY = ["--profile", "tiny", "--device", "cpu"]


@pytest.fixture
def folder(tmp_path, tiny, monkeypatch):
    """A direction for the tiny model, one readable image and a file that is not a folder."""
    monkeypatch.setenv("ASYRP_CACHE", str(tmp_path / "cache"))
    saved_direction(tmp_path / "dir", tiny)
    Image.new("RGB", (32, 32), (200, 120, 90)).save(tmp_path / "ok.png")
    (tmp_path / "file.txt").write_text("a file, not a folder")
    return tmp_path


def error_of(capsys, argv) -> tuple[int, str]:
    """(exit code, the error line after "error: ") of ``asyrp *argv``, argparse's refusals included."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if ": error: " in line]
    assert lines, err
    return code, lines[-1].split(": error: ", 1)[1]


# (argv with T for the fixture's folder, what the message must start with); each names the flag that was given
BAD = [
    (["sample", "--profile", "no-such-profile", "--output", "T/s.png"], "--profile: unknown profile"),
    (["sample", "--profile", "tiny", "--device", "tpu", "--output", "T/s.png"], "--device: expected 'cpu'"),
    (["sample", *TINY, "--steps", "5000", "--output", "T/s.png"], "--steps: expected at most 1000"),
    (["sample", *TINY, "--steps", "2", "--n", "1", "--output", "T/file.txt/s.png"], "--output: cannot write"),
    (["train", *TINY, "--source", "face", "--target", "smiling face", "--output", "T/new", "--t-edit", "100",
      "--t-boost", "500"], "--t-boost: expected --t-boost ≤ --t-edit"),
    (["train", *TINY, "--source", "face", "--target", "smiling face", "--output", "T/new", "--t-edit", "5000"],
     "--t-edit: expected a timestep in [0, 999]"),
    (["train", *TINY, "--source", "face", "--target", "smiling face", "--output", "T/new", "--images", "T/none"],
     "--images: "),
    (["train", *TINY, "--source", "face", "--target", "smiling face", "--output", "T/file.txt"],
     "--output: "),
    (["train", *TINY, "--source", "face", "--target", "smiling face", "--output", "T/dir"],
     "--output: "),
    (["train", *TINY, "--source", "face", "--target", "smiling face", "--output", "T/new", "--attribute", "smile"],
     "--attribute, --value: give both"),
    (["train", *TINY, "--source", "face", "--target", "smiling face", "--output", "T/new", "--attribute", "mood",
      "--value", "happy"], "--attribute: expected one of"),
    (["train", *TINY, "--source", "face", "--target", "smiling face", "--output", "T/new", "--save-every", "-1"],
     "argument --save-every: expected a number of seconds ≥ 0"),
    (["edit", *TINY, "--direction", "T/dir", "--input", "T/ok.png", "--output", "T/o", "--t-edit", "5000"],
     "--t-edit: expected a timestep in [0, 999]"),
    (["edit", *TINY, "--direction", "T/dir", "--input", "T/ok.png", "--output", "T/o", "--t-boost", "1000"],
     "--t-boost: expected a timestep in [0, 999]"),
    (["edit", *TINY, "--direction", "T/dir", "--input", "T/ok.png", "--output", "T/o", "--steps", "5000"],
     "--steps: expected at most 1000"),
    (["edit", *TINY, "--direction", "T/dir:9", "--input", "T/ok.png", "--output", "T/o"],
     "--direction: the strength in"),
    (["edit", *TINY, "--direction", "T/dir", "--input", "T/ok.png", "--output", "T/file.txt"],
     "--output: "),
    (["edit", *TINY, "--direction", "T/dir", "--input", "T/none", "--output", "T/o"], "--input: "),
    (["edit", *TINY, "--direction", "T/dir", "--input", "T/ok.png", "--output", "T/o", "--retry", "0.5"],
     "argument --retry: expected a strength multiplier above 1"),
    (["intervals", *TINY, "--source", "face", "--target", "smiling face", "--points", "5000"],
     "--points: expected at most 1000"),
    (["intervals", *TINY, "--source", "face", "--target", "smiling face", "--n-images", "1", "--steps", "2",
      "--points", "2", "--edit-lpips", "100", "--output", "T/iv"],
     "--edit-lpips: LPIPS(x, P_t) never reaches the threshold"),
    (["demo", *TINY, "--direction", "T/dir", "--steps", "5000", "--output", "T/d.png"], "--steps: expected at most"),
    (["evaluate", *TINY, "--direction", "T/dir", "--attribute", "smile", "--value", "smiling", "--seed", "-1"],
     "--seed: expected a toy-world seed ≥ 0"),
]


@pytest.mark.parametrize("argv, start", BAD, ids=[f"{a[0]} {a[-2]} {a[-1]}"[:60] for a, _ in BAD])
def test_an_error_names_the_flag_the_user_typed(folder, capsys, argv, start):
    code, msg = error_of(capsys, [a.replace("T/", f"{folder}/") for a in argv])
    assert code == 2
    assert msg.startswith(start), msg
    for field in ("num_steps", "save_every_seconds", "lpips_x_pt", "device=", "name:"):
        assert field not in msg, msg
    assert not re.search(r"(?<![-\w])t_(edit|boost):", msg), msg


def test_a_library_label_becomes_the_flag_only_where_the_subcommand_has_it():
    train = argparse.Namespace(t_edit=None, t_boost=None, steps=None, profile="tiny")
    assert _flag_message("t_edit, t_boost: not given", train) == "--t-edit, --t-boost: not given"
    assert _flag_message("points: expected at most 1000", train) == "points: expected at most 1000"
    rule = ("lpips_x_pt never reaches 0.33: its maximum is 0.12 at t = 980. Use a lower threshold or include "
            "larger timesteps.")
    assert _flag_message(rule, train) == ("--t-edit: the LPIPS rule finds no t_edit: LPIPS(x, P_t) never reaches "
                                          "the threshold 0.33 on these images (its maximum is 0.12 at t = 980); "
                                          "give --t-edit (asyrp intervals draws the curves)")
    intervals = argparse.Namespace(edit_lpips=None, boost_lpips=None)
    assert _flag_message(rule.replace("lpips_x_pt", "lpips_x_xt"), intervals).startswith(
        "--boost-lpips: γ_t = LPIPS(x, x_t) never reaches the threshold 0.33")


def test_train_resume_on_a_folder_with_nothing_to_resume_says_so(tmp_path, capsys):
    DeltaNet((8, 4, 4)).save(tmp_path / "finished")  # a direction without its training state
    (tmp_path / "empty").mkdir()
    for name, why in (("missing", "there is no folder"), ("empty", "holds no training state"),
                      ("finished", "holds a trained direction but not its training state")):
        code, msg = error_of(capsys, ["train", *TINY, "--output", str(tmp_path / name), "--resume"])
        assert code == 2
        assert msg.startswith(f"--resume: nothing to resume: ") and why in msg and str(tmp_path / name) in msg
        assert "--source: expected" not in msg and "give --source and --target" in msg
    assert not (tmp_path / "missing").exists()


def bad_files(folder):
    """Three files with image endings that cannot be read, and why each fails."""
    (folder / "text.png").write_text("not an image")
    (folder / "empty.jpg").write_bytes(b"")
    png = (folder / "whole.png")
    Image.new("RGB", (32, 32), (10, 200, 30)).save(png)
    (folder / "cut.png").write_bytes(png.read_bytes()[:60])  # a PNG cut short: its header reads, its data not
    png.unlink()
    return ["cut.png", "empty.jpg", "text.png"]


def test_edit_on_a_folder_with_unreadable_files_edits_the_rest_lists_them_and_fails(folder, capsys):
    inputs = folder / "in"
    inputs.mkdir()
    for i, name in enumerate(("a.png", "b.jpg")):
        Image.new("RGB", (40, 32), (50 * i, 100, 150)).save(inputs / name)
    bad = bad_files(inputs)
    (inputs / "notes.txt").write_text("not an image file by its ending: ignored, as before")
    code = main(["edit", *TINY, "--direction", str(folder / "dir"), "--input", str(inputs), "--output",
                 str(folder / "out"), "--steps", "2", "--compare", str(folder / "grid.png")])
    err = capsys.readouterr().err
    assert code == 1, err
    assert sorted(p.name for p in (folder / "out").iterdir()) == ["a.png", "b.png"]
    assert (folder / "grid.png").is_file() and "wrote 2 edited image(s)" in err
    assert "3 of the 5 image files" in err and "listed at the end" in err.split("wrote 2")[0]
    listing = err.split("could not be read and were not edited:\n")[1].splitlines()
    assert [line.split(": ")[0].strip() for line in listing] == [str(inputs / name) for name in bad]
    assert all("not a readable image file" in line for line in listing)
    assert "Traceback" not in err


def test_edit_on_a_folder_with_nothing_readable_fails_clearly(folder, capsys):
    (folder / "none").mkdir()
    (folder / "none" / "readme.txt").write_text("no image here")
    code, msg = error_of(capsys, ["edit", *TINY, "--direction", str(folder / "dir"), "--input",
                                  str(folder / "none"), "--output", str(folder / "out")])
    assert code == 2 and msg.startswith(f"--input: {folder / 'none'}: no image files found")
    (folder / "bad").mkdir()
    bad = bad_files(folder / "bad")
    code = main(["edit", *TINY, "--direction", str(folder / "dir"), "--input", str(folder / "bad"), "--output",
                 str(folder / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert f"error: --input: no image in {folder / 'bad'} can be read (all 3 image files)" in err
    assert all(str(folder / "bad" / name) in err for name in bad)
    code, msg = error_of(capsys, ["edit", *TINY, "--direction", str(folder / "dir"), "--input",
                                  str(folder / "bad" / "text.png"), "--output", str(folder / "out")])
    assert code == 2 and msg.startswith(f"--input: {folder / 'bad' / 'text.png'}: not a readable image file")
    assert not (folder / "out").exists()
