"""Time every notebook under nbval, one after the other, as the test command runs them (toy profile by default).

    python benchmarks/time_notebooks.py                       # all notebooks → benchmarks/notebook_times.json/.md
    python benchmarks/time_notebooks.py 05_h_space 06_training_f_t --out /tmp/times

Each notebook runs in its own ``pytest --nbval-lax --nbval-current-env`` process (the same flags as the README's
test command), so a time includes the kernel's start and the imports, as a student's or CI's run does. The
machine's load average is read before each run: the table says whether the machine was idle, since a shared
machine makes every number larger. Budget: each notebook ≤ 3 min and the series ≤ 15 min on a 2-core CPU, idle.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK_LIMIT_S = 180
SERIES_LIMIT_S = 900


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def time_notebook(path: Path, profile: str) -> dict:
    load_before = os.getloadavg()[0]
    env = dict(os.environ, ASYRP_PROFILE=profile)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
                           "--nbval-lax", "--nbval-current-env", "--nbval-cell-timeout=1200", str(path)],
                          cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or [""]
    return {"notebook": path.stem, "seconds": round(seconds, 1), "passed": proc.returncode == 0,
            "load_before": round(load_before, 2), "summary": tail[0][:200]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("notebooks", nargs="*", help="notebook stems (default: every notebooks/NN_*.ipynb)")
    p.add_argument("--profile", default="toy", help="ASYRP_PROFILE for the runs (default toy)")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "notebook_times"),
                   help="path prefix of the .json and .md written (default benchmarks/notebook_times)")
    args = p.parse_args(argv)
    paths = ([REPO / "notebooks" / f"{Path(n).stem}.ipynb" for n in args.notebooks] if args.notebooks
             else sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")))
    missing = [str(x) for x in paths if not x.is_file()]
    if missing:
        p.error(f"no such notebook: {', '.join(missing)}")
    rows = []
    for path in paths:
        print(f"running {path.name} …", file=sys.stderr, flush=True)
        row = time_notebook(path, args.profile)
        print(f"  {row['seconds']:.0f} s, {'passed' if row['passed'] else 'FAILED'} (load before "
              f"{row['load_before']})", file=sys.stderr, flush=True)
        rows.append(row)
    total = round(sum(r["seconds"] for r in rows), 1)
    report = {"machine": {"cpu": _cpu_name(), "cores": os.cpu_count(), "python": platform.python_version()},
              "profile": args.profile, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "limits_s": {"notebook": NOTEBOOK_LIMIT_S, "series": SERIES_LIMIT_S}, "total_s": total,
              "notebooks": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    lines = [f"# Notebook times under nbval ({args.profile} profile)", "",
             f"{report['machine']['cpu']}, {report['machine']['cores']} cores, Python {report['machine']['python']}; "
             f"{report['date']}. Written by `python benchmarks/time_notebooks.py`. Budget: each notebook ≤ "
             f"{NOTEBOOK_LIMIT_S} s, the series ≤ {SERIES_LIMIT_S} s, on this CPU when idle (the load average "
             f"before each run says whether it was).", "",
             "| notebook | seconds | within 3 min | passed | load before |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| `{r['notebook']}` | {r['seconds']:.0f} | {'yes' if r['seconds'] <= NOTEBOOK_LIMIT_S else 'NO'} "
                     f"| {'yes' if r['passed'] else 'NO'} | {r['load_before']:.2f} |")
    lines.append(f"| **series** | **{total:.0f}** | {'yes' if total <= SERIES_LIMIT_S else 'NO'} (≤ 15 min) | "
                 f"{'yes' if all(r['passed'] for r in rows) else 'NO'} | |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}; series {total:.0f} s", file=sys.stderr)
    return 0 if all(r["passed"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
