"""Wall-clock targets of the offline course, measured as a student meets them: fresh processes, toy profile.

Times, each in a new Python process (imports included, as in a notebook's first cell or a shell):
  1. ``load_profile("toy")``                                         — target: under 10 s
  2. ``asyrp train --profile toy --source face --target "face with glasses" --n-images 16 --epochs 1``
                                                                     — target: a few minutes
  3. ``asyrp demo`` with the direction from 2, at strengths 1 and -1 — target: under a minute
  4. ``asyrp edit`` of a folder of 16 rendered toy faces at ``--batch-size 16`` with the direction from 2
     — target: ≤ 1 s per image (the whole command, start-up and inversion included, divided by 16); then
     the same with ``--precision bf16``

Needs ``data/toy_ddpm/`` (or ``$ASYRP_DATA``). The timings depend on the architecture, not on how well the
weights are trained, except through t_edit: with ``--t-edit`` / ``--t-boost`` given, (2) skips the interval
search and trains that many steps whatever the model. Prints a table; ``--json FILE`` writes the numbers.

    python benchmarks/bench_toy_cli.py [--t-edit 500 --t-boost 200] [--json toy_cli.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(cmd: list[str], env: dict) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return seconds


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--t-edit", type=int, default=None)
    p.add_argument("--t-boost", type=int, default=None)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    from asyrp_lib.models import perceptual
    from asyrp_lib._utils import data_dir

    if not (data_dir() / "toy_ddpm" / "config.json").is_file():
        sys.exit(f"{data_dir() / 'toy_ddpm'} is missing: train it first (scripts/train_toy_ddpm.py, scripts/README.md step 3)")
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, ASYRP_CACHE=str(Path(tmp) / "cache"), PYTHONPATH=str(ROOT))
        # fill the LPIPS cache first, so that no timing includes the one-time backbone fetch
        lpips_cache = perceptual.cache_dir()  # the caller's cache, read before ASYRP_CACHE is redirected
        if lpips_cache.is_dir():
            (Path(tmp) / "cache").mkdir()
            os.symlink(lpips_cache, Path(tmp) / "cache" / "lpips")
        run([py, "-c", "from asyrp_lib.models.perceptual import load_lpips; load_lpips('alex')"], env)

        rows = {}
        rows["load_profile('toy')"] = run([py, "-c", "from asyrp_lib.models.profiles import load_profile; "
                                                     "load_profile('toy')"], env)
        direction = str(Path(tmp) / "glasses")
        train = [py, "-m", "asyrp_lib", "train", "--profile", "toy", "--source", "face", "--target",
                 "face with glasses", "--n-images", "16", "--epochs", "1", "--output", direction]
        if args.t_edit is not None:
            train += ["--t-edit", str(args.t_edit)]
        if args.t_boost is not None:
            train += ["--t-boost", str(args.t_boost)]
        rows["asyrp train (16 images, 1 epoch)"] = run(train, env)
        meta = json.loads((Path(direction) / "delta_net.json").read_text())
        rows["asyrp demo (6 faces, 2 edits)"] = run(
            [py, "-m", "asyrp_lib", "demo", "--direction", direction, "--direction", direction + ":-1",
             "--output", str(Path(tmp) / "demo.png")], env)

        faces = Path(tmp) / "faces"
        run([py, "-c", "import sys; from asyrp_lib.toy import toyworld as tw; from asyrp_lib.images import save_images; "
                       "save_images(tw.render(tw.sample_attributes(16, seed=4242)), sys.argv[1], "
                       "[f'{i:02d}.png' for i in range(16)])", str(faces)], env)
        edit = run([py, "-m", "asyrp_lib", "edit", "--profile", "toy", "--direction", direction, "--input",
                    str(faces), "--output", str(Path(tmp) / "edited"), "--batch-size", "16"], env)
        rows["asyrp edit (16 faces, batch 16), s/img"] = edit / 16
        edit = run([py, "-m", "asyrp_lib", "edit", "--profile", "toy", "--direction", direction, "--input",
                    str(faces), "--output", str(Path(tmp) / "edited_bf16"), "--batch-size", "16",
                    "--precision", "bf16"], env)
        rows["asyrp edit --precision bf16 (16 faces, batch 16), s/img"] = edit / 16

    import torch

    machine = f"{platform.machine()} CPU, {os.cpu_count()} cores, torch {torch.__version__}"
    print(f"machine: {machine}; t_edit {meta.get('t_edit')}, t_boost {meta.get('t_boost')}, "
          f"{meta.get('steps')} DDIM steps")
    print("| command | seconds |\n|---|---|")
    for k, v in rows.items():
        print(f"| {k} | {v:.1f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "seconds": rows, "t_edit": meta.get("t_edit"),
                                               "t_boost": meta.get("t_boost")}, indent=1))


if __name__ == "__main__":
    main()
