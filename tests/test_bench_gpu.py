"""benchmarks/bench_gpu.py in its reduced mode (tiny profile, 32×32, 4 steps, CPU): it runs, both ways make
images of the same shape, and the JSON row and the README row hold what issue 15 asks for."""
import json
import math
from pathlib import Path

import pytest
from _scripts import load_script

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench():
    return load_script("benchmarks/bench_gpu.py")


@pytest.mark.slow
def test_quick_run_writes_the_json_row_and_a_readme_row(bench, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# Benchmarks\n\n{bench.TABLE_HEADER}\n|---|\n| old row |\n\nafter the table\n")
    out = tmp_path / "gpu.json"
    r = bench.main(["--device", "cpu", "--quick", "--json", str(out), "--readme", str(readme)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(r))
    for key in ("date", "device", "torch", "profile", "size", "steps", "t_edit", "n_edit", "m_train", "batch",
                "train_batch", "precision", "channels_last", "compile", "refine", "asymmetric_steps"):
        assert key in r, key
    assert r["device"].startswith("CPU") and r["profile"] == "tiny" and r["size"] == 32 and r["steps"] == 4
    assert r["asymmetric_steps"] == 2  # t_edit: half of the steps asymmetric
    edit, train = r["edit"], r["train"]
    assert edit["shape"]["reference"] == edit["shape"]["library"] == [3, 32, 32]
    for part in (edit, train):
        assert all(v > 0 and math.isfinite(v) for v in part["s_per_img"].values())
        assert part["ratio"] > 0 and part["compile_s"] >= 0
        assert part["peak_gb"] == {"defaults": None, "library": None}  # no CUDA here
    assert train["optimizer_steps"] == {"reference": 2, "library": 4}  # 1 image × 2 steps; 2 batches × 2 steps
    assert train["epoch_s"]["reference"] == pytest.approx(train["s_per_img"]["reference"] * 4)
    for precision in ("fp32", "bf16"):
        errors = r["precision_error"][precision]
        assert all(math.isfinite(v) for v in errors.values())
    assert r["precision_error"]["fp32"]["reconstruction_vs_fp32"] == 0.0
    assert 0 < r["precision_error"]["bf16"]["reconstruction_vs_fp32"] < 0.1
    lines = readme.read_text().splitlines()
    row = lines[lines.index("| old row |") + 1]
    assert row.startswith(f"| {r['date']} | CPU") and row.count("|") == bench.TABLE_HEADER.count("|")
    assert lines[-1] == "after the table"


def test_readme_table_exists_in_the_benchmarks_readme(bench):
    assert bench.TABLE_HEADER in (ROOT / "benchmarks" / "README.md").read_text().splitlines()


def test_quick_settings_and_bad_arguments(bench):
    args = bench.parse_args(["--quick", "--n-edit", "6"])
    assert args.profile == "tiny" and args.steps == 4 and args.n_edit == 6  # given values win over --quick
    with pytest.raises(SystemExit):
        bench.parse_args(["--precision", "fp16"])
