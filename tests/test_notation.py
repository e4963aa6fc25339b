"""The paper's notation in every notebook (sources and committed outputs), solution and library file.

- γ_t = LPIPS(x, x_t) is the quality deficiency; "λ_t" is not used for it (λ_CLIP and λ_L1 are the loss weights).
- ξ_t = LPIPS(x, P_T) − LPIPS(x, P_t) is the editing strength of [T, t]; the curve LPIPS(x, P_t) itself is never
  called ξ_t (in a definition, a legend, a label or a printout).

Pure text reading: nothing is executed.
"""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
P_T = r"LPIPS\(\s*x(?:_0)?\s*,\s*P_t\s*\)"  # the curve LPIPS(x, P_t), also written with x_0

# (pattern, what it means)
FORBIDDEN = [
    (re.compile(r"λ_t(?![A-Za-z_{])|λ_\{t\}|\\lambda_t\b"), "γ_t = LPIPS(x, x_t) written as λ_t"),
    (re.compile(r"ξ_t\s*=\s*" + P_T), "the curve LPIPS(x, P_t) defined as ξ_t"),
    (re.compile(P_T + r"\s*\(\s*ξ"), "the curve LPIPS(x, P_t) labelled ξ"),
    (re.compile(r"ξ_t\s*\(\s*" + P_T), "ξ_t glossed as LPIPS(x, P_t)"),
    (re.compile(r"\bxi_t\s*=\s*lpips", re.I), "a variable xi_t holding LPIPS(x, P_t)"),
]


def _texts():
    for path in sorted((ROOT / "notebooks").rglob("*.ipynb")):
        if ".ipynb_checkpoints" in path.parts:
            continue
        nb = json.loads(path.read_text(encoding="utf-8"))
        for i, cell in enumerate(nb["cells"]):
            src = cell.get("source", "")
            yield f"{path.relative_to(ROOT)} cell {i}", "".join(src) if isinstance(src, list) else src
            for out in cell.get("outputs", []):
                text = out.get("text") or out.get("data", {}).get("text/plain", "")
                yield f"{path.relative_to(ROOT)} cell {i} output", "".join(text) if isinstance(text, list) else text
    for path in sorted((ROOT / "notebooks" / "solutions").glob("*.md")):
        yield str(path.relative_to(ROOT)), path.read_text(encoding="utf-8")
    for path in sorted((ROOT / "asyrp_lib").rglob("*.py")) + [ROOT / "README.md"]:
        yield str(path.relative_to(ROOT)), path.read_text(encoding="utf-8")


def test_the_texts_are_read():
    names = [where for where, _ in _texts()]
    assert any("03_lpips" in n for n in names) and any("intervals.py" in n for n in names)


@pytest.mark.parametrize("pattern,meaning", FORBIDDEN, ids=[m for _, m in FORBIDDEN])
def test_no_text_uses_the_drifted_notation(pattern, meaning):
    found = [f"{where}: …{text[max(0, m.start() - 30):m.end() + 30]!r}…" for where, text in _texts()
             for m in pattern.finditer(text)]
    assert not found, f"{meaning}:\n" + "\n".join(found[:20])


@pytest.mark.parametrize("text,caught", [
    ("λ_t = LPIPS(x, x_t)", True), ("largest mean λ_t: 1.09", True), ("λ_CLIP and λ_L1", False),
    ("ξ_t = LPIPS(x, P_t)", True), ("ξ_t = LPIPS(x_0, P_T) − LPIPS(x_0, P_t)", False),
    ("LPIPS(x, P_t) (ξ_t)", True), ('label="ξ_t = LPIPS(x, P_t)"', True), ("xi_t = lpips(x0, p_t)", True),
    ('label="ξ_t = LPIPS(x, P_T) − LPIPS(x, P_t)"', False),
    ("γ_t = LPIPS(x, x_t)", False),
])
def test_the_patterns_catch_what_they_mean(text, caught):
    assert any(p.search(text) for p, _ in FORBIDDEN) == caught
