"""The contributors' fast loop, ``pytest -m "not slow"``: every notebook is marked slow (the repository's
conftest.py), so the loop leaves them out, while plain ``pytest`` (the README's test command, which CI runs) still
collects them."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def collect(*args) -> str:
    return subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=300).stdout


def test_not_slow_leaves_out_every_notebook_and_plain_pytest_keeps_them():
    notebook = "notebooks/01_ddim.ipynb"
    everything = collect(notebook)
    cells = [line for line in everything.splitlines() if line.startswith(f"{notebook}::")]
    assert len(cells) > 5, everything
    fast = collect("-m", "not slow", notebook)
    assert not [line for line in fast.splitlines() if "::" in line], fast
    assert re.search(rf"\b{len(cells)} deselected", fast), fast
