"""scripts/compare_methods.py --only-f-t: measures the Asyrp (f_t) row again with the current direction and keeps
the stored baselines, but only where they were measured at the direction's t_edit, steps and prompts."""
import json
import shutil
from pathlib import Path

import pytest
from _scripts import load_script

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "data" / "directions" / "smiling"


@pytest.fixture(scope="module")
def script():
    return load_script("scripts/compare_methods.py")


def stored_comparison(folder: Path, n: int, **override) -> dict:
    meta = json.loads((SHIPPED / "delta_net.json").read_text())
    row = {"n": n, "success": 0.25, "others_kept": 0.5, "lpips": 0.1}
    entry = {"source": meta["source"], "target": meta["target"], "attribute": meta["attribute"],
             "value": meta["value"], "t_edit": meta["t_edit"], "t_boost": meta["t_boost"], "n_steps": meta["steps"],
             "seconds": 1.0, "results": {"reconstruction": dict(row, success=0.0), "ε-shift": dict(row),
                                         "Asyrp (f_t)": dict(row, success=-1.0)}}
    entry.update(override)
    report = {"attributes": {"smiling": entry}, "commit": "abc1234", "machine": "the earlier machine",
              "settings": {"n_test": n, "n_train": 8, "epochs": 3, "xt_iters": 8}}
    (folder / "comparison.json").write_text(json.dumps(report))
    return report


@pytest.fixture
def directions(tmp_path):
    if not (SHIPPED / "delta_net.json").is_file():
        pytest.skip("no shipped smiling direction")
    shutil.copytree(SHIPPED, tmp_path / "smiling")
    return tmp_path


@pytest.mark.slow
def test_only_f_t_replaces_that_row_and_keeps_the_others(script, directions):
    before = stored_comparison(directions, n=2)
    rc = script.main(["--only", "smiling", "--only-f-t", "--n-test", "2", "--directions", str(directions)])
    assert rc == 0
    after = json.loads((directions / "comparison.json").read_text())
    entry = after["attributes"]["smiling"]
    old = before["attributes"]["smiling"]["results"]
    assert entry["results"]["ε-shift"] == old["ε-shift"] and entry["results"]["reconstruction"] == old["reconstruction"]
    f_t = entry["results"]["Asyrp (f_t)"]
    assert f_t["n"] == 2 and 0.0 <= f_t["success"] <= 1.0 and f_t["lpips"] > 0  # measured, not the stored -1
    assert after["commit"] == "abc1234" and after["machine"] == "the earlier machine"  # the baselines' run
    assert set(entry["f_t_measured"]) == {"commit", "machine", "seconds"}
    md = (directions / "comparison.md").read_text()
    assert "The Asyrp (f_t) row was measured again" in md and "abc1234" in md


@pytest.mark.parametrize("override, n_test, needle", [({"t_edit": 580}, 2, "t_edit 580 → "),
                                                      ({"target": "face with glasses"}, 2, "target"),
                                                      ({}, 3, "held-out faces 2 → 3")])
def test_only_f_t_refuses_baselines_measured_otherwise(script, directions, capsys, override, n_test, needle):
    stored_comparison(directions, n=2, **override)
    text = (directions / "comparison.json").read_text()
    rc = script.main(["--only", "smiling", "--only-f-t", "--n-test", str(n_test), "--directions", str(directions)])
    assert rc == 2
    err = capsys.readouterr().err
    assert needle in err and "--force without --only-f-t" in err
    assert (directions / "comparison.json").read_text() == text  # nothing overwritten


def test_only_f_t_needs_a_stored_comparison(script, directions, capsys):
    rc = script.main(["--only-f-t", "--directions", str(directions)])
    assert rc == 2 and "run without it first" in capsys.readouterr().err
