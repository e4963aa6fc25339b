"""A notebook in the celebahq code path at reduced size: scripts/run_notebooks_standin.sh runs 00_tour under nbval
with the random-weight celebahq architecture at 64×64 and a small random CLIP, from local folders, offline.

Every notebook runs the same way (the script with no arguments, several minutes each on a CPU); the tour is the
short one that CI runs. Random weights sample noise: this checks that no cell assumes toy faces, not results.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "run_notebooks_standin.sh"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bash") is None, reason="the script needs bash")
def test_the_tour_runs_in_the_celebahq_code_path(tmp_path):
    env = dict(os.environ, STANDIN_DIR=str(tmp_path / "standin"), PYTHON=sys.executable, ASYRP_STEPS="2")
    r = subprocess.run(["bash", str(SCRIPT), "notebooks/00_tour.ipynb", "-q"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "passed" in r.stdout and "failed" not in r.stdout
    assert (tmp_path / "standin" / "unet" / "config.json").is_file()  # the stand-in was made once, there

