"""The method comparison of notebook 05 at full size: every editing method on held-out toy faces, per attribute.

    python scripts/compare_methods.py                       # smiling, glasses, closed eyes; 32 held-out faces each
    python scripts/compare_methods.py --only smiling --n-test 8

For each attribute: x_T optimisation (per test face), the ε-shift in P_t and D_t and one global Δh (symmetric
and asymmetric) optimised on --n-train development faces, and Asyrp with the shipped direction f_t
(data/directions/<name>/, trained by scripts/train_shipped_directions.sh) at its own t_edit and t_boost; the
baselines edit from the same t_edit. Every method is measured by the oracle on the same --n-test held-out faces
that do not yet show the attribute (evaluate.source_faces). Writes data/directions/comparison.json (all numbers,
the settings, the machine and the commit) and comparison.md (one table per attribute), which notebook 05 and the
README show. An attribute already in comparison.json is skipped unless --force, so an interrupted run resumes.

    python scripts/compare_methods.py --only-f-t            # after retraining the directions: their row only

--only-f-t measures the Asyrp (f_t) row again and keeps every other row of comparison.json: the baselines do not
depend on the direction, only on its t_edit and DDIM steps, so it refuses an attribute where those (or --n-test)
differ from what was stored. The table then says where and when that row was measured.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from asyrp_lib.beyond import compare  # noqa: E402
from asyrp_lib.toy import evaluate  # noqa: E402
from asyrp_lib.toy import toyworld as tw  # noqa: E402
from asyrp_lib._utils import data_dir  # noqa: E402
from asyrp_lib.core.delta_net import DeltaNet  # noqa: E402

# The shipped directions compared; each one's prompts and toy attribute are read from its own delta_net.json.
NAMES = ("smiling", "glasses", "closed_eyes")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=NAMES, help="one direction only")
    p.add_argument("--n-test", type=int, default=32, help="held-out faces per attribute (default 32)")
    p.add_argument("--n-train", type=int, default=8, help="development faces the global Δh and Δε see (default 8)")
    p.add_argument("--epochs", type=int, default=3, help="passes when optimising the global Δh and Δε (default 3)")
    p.add_argument("--xt-iters", type=int, default=8, help="Adam steps of the x_T optimisation (default 8)")
    p.add_argument("--directions", default=None, help="folder of the directions (default data/directions)")
    p.add_argument("--output", default=None, help="where comparison.json/.md go (default: --directions)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--force", action="store_true", help="measure attributes already in comparison.json again")
    p.add_argument("--only-f-t", action="store_true",
                   help="measure only the Asyrp (f_t) row again, keeping the baselines' rows in comparison.json")
    return p.parse_args(argv)


def machine(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    n = torch.get_num_threads()
    return f"CPU ({platform.machine()}, {n} thread{'' if n == 1 else 's'})"


def commit() -> str:
    """The commit measured, with "+changes" when tracked files differ from it."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    try:
        return git("rev-parse", "--short", "HEAD") + ("+changes" if git("status", "--porcelain", "-uno") else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


F_T = "Asyrp (f_t)"


def compare_one(profile, oracle, name: str, folder: Path, args, stored: dict | None = None) -> dict:
    """Every method on one attribute; with ``stored`` (its entry in comparison.json) the f_t row only."""
    meta = DeltaNet.read_metadata(folder)
    missing = [k for k in ("source", "target", "attribute", "value") if not meta.get(k)]
    if missing:
        raise ValueError(f"{folder}: its delta_net.json lacks {', '.join(missing)} (train it with asyrp train "
                         f"--attribute/--value, as scripts/train_shipped_directions.sh does)")
    source, target, attribute, value = (meta[k] for k in ("source", "target", "attribute", "value"))
    n_steps = int(meta.get("steps") or profile.default_steps)
    if stored is not None:
        check_comparable(name, stored, meta, n_steps, args.n_test)
    train = evaluate.source_faces(attribute, value, args.n_train, seed=evaluate.DEV_SEED, size=profile.image_size,
                                  device=profile.device)
    test = evaluate.source_faces(attribute, value, args.n_test, seed=evaluate.HELDOUT_SEED,
                                 size=profile.image_size, device=profile.device)
    t0 = time.time()
    results = compare.compare_methods(
        profile, oracle, train=train, test=test, attribute=attribute, target_value=value, source=source,
        target=target, t_edit=int(meta["t_edit"]), n_steps=n_steps,
        delta_h={"epochs": args.epochs}, eps_shift={"epochs": args.epochs}, x_T={"iters": args.xt_iters},
        direction=str(folder), methods=(F_T,) if stored is not None else compare.METHODS, progress=False)
    results = {k: {kk: vv for kk, vv in v.items() if isinstance(vv, (int, float, str, dict, type(None)))}
               for k, v in results.items()}
    if stored is not None:
        merged = {k: (results[F_T] if k == F_T else v) for k, v in stored["results"].items()}
        merged.setdefault(F_T, results[F_T])
        return {**stored, "t_boost": int(meta.get("t_boost") or 0), "results": merged,
                "f_t_measured": {"commit": commit(), "machine": machine(args.device),
                                 "seconds": round(time.time() - t0, 1)}}
    return {"source": source, "target": target, "attribute": attribute, "value": value,
            "t_edit": int(meta["t_edit"]), "t_boost": int(meta.get("t_boost") or 0),
            "n_steps": n_steps, "seconds": round(time.time() - t0, 1), "results": results}


def check_comparable(name: str, stored: dict, meta: dict, n_steps: int, n_test: int) -> None:
    """The stored baselines fit the direction only at its t_edit, DDIM steps and prompts, on as many faces."""
    now = {"t_edit": int(meta["t_edit"]), "n_steps": n_steps, "source": meta["source"], "target": meta["target"],
           "attribute": meta["attribute"], "value": meta["value"]}
    differ = [f"{k} {stored.get(k)!r} → {v!r}" for k, v in now.items() if stored.get(k) != v]
    stored_n = stored["results"].get("reconstruction", {}).get("n")
    if stored_n is not None and stored_n != n_test:
        differ.append(f"held-out faces {stored_n} → {n_test}")
    if differ:
        raise ValueError(f"{name}: the stored comparison was measured with other settings ({'; '.join(differ)}); "
                         f"measure every method again (--force without --only-f-t)")


def write_markdown(path: Path, report: dict) -> None:
    s = report["settings"]
    lines = ["# Editing methods on held-out toy faces\n",
             f"{s['n_test']} held-out faces per attribute; the global Δh and Δε optimised on {s['n_train']} "
             f"development faces ({s['epochs']} epochs), x_T optimisation {s['xt_iters']} Adam steps per face; "
             f"measured by `scripts/compare_methods.py` at commit {report['commit']} on {report['machine']}.\n"]
    for name, r in report["attributes"].items():
        lines.append(f"## {name}: “{r['source']}” → “{r['target']}” (t_edit {r['t_edit']}, "
                     f"t_boost {r['t_boost']} for f_t, {r['n_steps']} DDIM steps)\n")
        if "f_t_measured" in r:
            m = r["f_t_measured"]
            lines.append(f"The Asyrp (f_t) row was measured again with the current direction, at commit "
                         f"{m['commit']} on {m['machine']}; the other rows are the run above's.\n")
        lines.append(compare.comparison_table(r["results"]) + "\n")
        lines.append(compare.comparison_verdict(r["results"]) + "\n")
    path.write_text("\n".join(lines))


def main(argv=None) -> int:
    args = parse_args(argv)
    from asyrp_lib.models.profiles import load_profile

    folder = Path(args.directions) if args.directions else data_dir() / "directions"
    out = Path(args.output) if args.output else folder
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "comparison.json"
    report = json.loads(json_path.read_text()) if json_path.is_file() else {"attributes": {}}
    if args.only_f_t:
        if not report["attributes"]:
            print(f"--only-f-t: no comparison in {json_path} to update; run without it first", file=sys.stderr)
            return 2
    else:
        report.update(settings={"n_test": args.n_test, "n_train": args.n_train, "epochs": args.epochs,
                                "xt_iters": args.xt_iters}, machine=machine(args.device), commit=commit())
    profile = load_profile("toy", device=args.device)
    oracle = tw.Oracle.load(device=profile.device)
    for name in ([args.only] if args.only else NAMES):
        stored = report["attributes"].get(name)
        if args.only_f_t and stored is None:
            print(f"{name}: not in {json_path}; measure all its methods first (without --only-f-t)", file=sys.stderr)
            continue
        if stored is not None and not (args.force or args.only_f_t):
            print(f"{name}: already measured (--force to redo)", file=sys.stderr)
            continue
        if not (folder / name / "delta_net.json").is_file():
            print(f"{name}: no direction in {folder / name} (scripts/train_shipped_directions.sh); skipped",
                  file=sys.stderr)
            continue
        print(f"{name}: {'the f_t row' if args.only_f_t else 'comparing methods'} on {args.n_test} held-out faces …",
              file=sys.stderr)
        try:
            report["attributes"][name] = compare_one(profile, oracle, name, folder / name, args,
                                                     stored if args.only_f_t else None)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        json_path.write_text(json.dumps(report, indent=1))  # after every attribute: nothing lost if stopped
        write_markdown(out / "comparison.md", report)
        print(compare.comparison_table(report["attributes"][name]["results"]), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
