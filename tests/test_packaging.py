"""The set-up files agree with each other, and the console script works."""
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
REQUIRED = {"torch", "diffusers", "transformers", "lpips", "matplotlib", "ipywidgets", "jupyterlab", "nbval"}


def _names(reqs):
    import re
    return {re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0].strip().lower() for r in reqs}


def test_pyproject_declares_every_required_package_with_loose_ranges():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(meta["dependencies"]) + [r for extra in meta["optional-dependencies"].values() for r in extra]
    assert REQUIRED <= _names(reqs)
    assert not [r for r in reqs if "==" in r], "pin exact versions in CI, not in the package"
    assert meta["scripts"]["asyrp"] == "asyrp_lib.front.cli:main"


def test_environment_yml_installs_the_same_pip_requirements():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    assert "pip" in deps and any(str(d).startswith("python") for d in deps)
    assert pip == ["-e .[notebooks,test]"]
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert {"notebooks", "test"} <= set(meta["optional-dependencies"])


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- test-command -->")[1].split("<!-- /test-command -->")[0]
    command = [line for line in block.splitlines() if line.strip() and not line.startswith("```")]
    assert len(command) == 1 and "pytest" in command[0]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "test-command" in ci and "torch==" in ci


def test_console_script_help_and_clear_errors(tmp_path):
    run = lambda *a: subprocess.run([sys.executable, "-m", "asyrp_lib", *a], capture_output=True, text=True,
                                    timeout=300, cwd=tmp_path)
    out = run("--help")
    assert out.returncode == 0 and "sample" in out.stdout
    bad = run("sample", "--profile", "tiny", "--output", "x.jpg")
    assert bad.returncode == 2 and "--output" in bad.stderr and "Traceback" not in bad.stderr
    bad = run("sample", "--profile", "nope")
    assert bad.returncode == 2 and "unknown profile" in bad.stderr and "Traceback" not in bad.stderr
    ok = run("sample", "--profile", "tiny", "--n", "2", "--steps", "3", "--output", "grid.png")
    assert ok.returncode == 0, ok.stderr
    from PIL import Image
    assert Image.open(tmp_path / "grid.png").size[0] > 64
