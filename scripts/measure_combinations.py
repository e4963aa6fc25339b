"""Two properties of the shipped directions beyond one edit, on held-out toy faces:

- strength −1 of ``smiling``: the share of faces that are not frowning (smiling or neutral) which then read as
  frowning;
- ``smiling`` + ``glasses`` at strength 1 each: the share of faces (not smiling, no glasses) that then read as
  smiling *and* wearing glasses.

    python scripts/measure_combinations.py            # 32 faces each; writes data/directions/combinations.json
    python scripts/measure_combinations.py --retry    # also with the CLIP check (asyrp_lib.beyond.retry): keys *_retry
    python scripts/measure_combinations.py --keep     # and with the check that keeps the other attributes: *_keep

Faces come from evaluate.HELDOUT_SEED + 50_000 onwards, a range the single-direction metrics do not use.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asyrp_lib.toy import evaluate  # noqa: E402
from asyrp_lib.toy import toyworld as tw  # noqa: E402
from asyrp_lib._utils import data_dir  # noqa: E402
from asyrp_lib.beyond.directions import faces_without  # noqa: E402


def measure(editor, oracle, folder: Path, n: int, seed: int, retry: bool = False, keep: bool = False) -> dict:
    """The two measurements; with ``retry`` also with the CLIP check (keys ``*_retry``), from the same edits: the
    checked edit's first pass is the plain one (``asyrp_lib.beyond.retry.edit_checked``); with ``keep`` also with the
    check that keeps the other attributes (``keep=`` the profile's prompts; keys ``*_keep``)."""
    from asyrp_lib.beyond.retry import edit_checked

    def edits(x, directions):  # [(key suffix, edited images)]
        gen = torch.Generator().manual_seed(0)
        if not retry:
            return [("", editor.edit(x, directions, generator=gen, reconstruct=False).edited)]
        checked = edit_checked(editor, x, directions, generator=gen, reconstruct=False)
        out = [("", checked.first_edited), ("_retry", checked.edited)]
        if keep:
            out.append(("_keep", edit_checked(editor, x, directions, keep=editor.profile.keep_prompts,
                                              generator=torch.Generator().manual_seed(0), reconstruct=False).edited))
        return out

    out = {}
    x = evaluate.source_faces("smile", "frowning", n, seed).images
    for suffix, edited in edits(x, [(str(folder / "smiling"), -1.0)]):
        labels = [tw.smile_label(p["smile"]) for p in oracle.predict(edited.clamp(-1, 1))]
        out[f"smiling_minus_1_frowning{suffix}"] = labels.count("frowning") / n
    x = faces_without({"smile": "smiling", "glasses": "yes"}, n, seed + 1_000).images
    for suffix, edited in edits(x, [(str(folder / "smiling"), 1.0), (str(folder / "glasses"), 1.0)]):
        preds = oracle.predict(edited.clamp(-1, 1))
        smiling = [tw.smile_label(p["smile"]) == "smiling" for p in preds]
        glasses = [p["glasses"] == "yes" for p in preds]
        out[f"smiling_plus_glasses_both{suffix}"] = sum(a and b for a, b in zip(smiling, glasses)) / n
        out[f"smiling_plus_glasses_smiling{suffix}"] = sum(smiling) / n
        out[f"smiling_plus_glasses_glasses{suffix}"] = sum(glasses) / n
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=32, help="faces per measurement (default 32)")
    p.add_argument("--directions", default=None, help="folder of the directions (default data/directions)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--retry", action="store_true", help="also measure with the CLIP check and retry (keys *_retry)")
    p.add_argument("--keep", action="store_true", help="also with the check that keeps the other attributes (keys "
                   "*_keep; implies --retry)")
    args = p.parse_args(argv)
    from asyrp_lib.core.pipeline import AsyrpEditor
    from asyrp_lib.models.profiles import load_profile

    folder = Path(args.directions) if args.directions else data_dir() / "directions"
    profile = load_profile("toy", device=args.device)
    editor = AsyrpEditor(profile, progress=False)
    oracle = tw.Oracle.load(device=profile.device)
    t0 = time.time()
    result = {"n": args.n, "first_seed": evaluate.HELDOUT_SEED + 50_000,
              **measure(editor, oracle, folder, args.n, evaluate.HELDOUT_SEED + 50_000, retry=args.retry or args.keep,
                      keep=args.keep)}
    result["seconds"] = round(time.time() - t0, 1)
    (folder / "combinations.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
