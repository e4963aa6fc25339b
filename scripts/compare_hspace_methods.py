"""Every h-space editing method × smile, glasses, eyes and hair colour on fresh held-out toy faces.

    python scripts/compare_hspace_methods.py                      # 32 held-out faces, every method, resumable
    python scripts/compare_hspace_methods.py --n-test 4 --profile tiny --output /tmp/x.json   # a smoke run

The methods are those of :mod:`asyrp_lib.beyond.methods`: Asyrp's shipped directions f_t, one global Δh and the
ε-shift optimised on development faces, PCA of h, the Jacobian ∂P_t/∂h, the pullback basis of ∂h/∂x_t (the three
named by the oracle on development faces), a linear boundary in h from CLIP zero-shot labels and from the
oracle's labels, and content injection from a reference face. All edit the same held-out faces (none showing
any of the four targets; seeds HELDOUT_SEED + 5000 …, not those of scripts/compare_methods.py), with η = 0.

Stages, in order (each writes the JSON as it goes; a row already in the file is kept, so a stopped run resumes):
reconstruction; Asyrp f_t, the two boundaries (each one's strength chosen on the development faces that name the
unsupervised directions, among 1, 2, 4, 8 class-mean distances) and injection; the unsupervised directions (fit and named on
development faces once for every attribute, then applied); the optimised global Δh and ε-shift; then the
strength curves (×0.5 and ×2 of
each method's chosen strength on the first --curve-faces faces). Fitted directions are cached in --cache.
``--redo METHOD …`` measures those methods' rows (of --attributes) again. Writes benchmarks/hspace_methods.json
and .md (with the commit, machine and date); the report is ``complete`` when every method × attribute has its row
and its strength curve (or was skipped, with the reason in ``skipped``).
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from asyrp_lib.toy import evaluate as ev  # noqa: E402
from asyrp_lib.toy import toyworld as tw  # noqa: E402
from asyrp_lib._utils import data_dir  # noqa: E402
from asyrp_lib.beyond import methods as bm  # noqa: E402

sys.path.insert(0, str(REPO / "scripts"))
from compare_methods import commit, machine  # noqa: E402  (one home: the comparison script's)

UNSUPERVISED = ("PCA of h", "Jacobian ∂P_t/∂h", "pullback ∂h/∂x_t")
FIRST = ("Asyrp (f_t)", "boundary (oracle labels)", "boundary (CLIP labels)", "content injection")
OPTIMISED = ("global Δh", "ε-shift")
TEST_SEED = ev.HELDOUT_SEED + 5_000
DEV_SEED = ev.DEV_SEED + 5_000


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="toy")
    p.add_argument("--n-test", type=int, default=32, help="held-out faces (default 32)")
    p.add_argument("--n-dev", type=int, default=8, help="development faces that name the unsupervised directions")
    p.add_argument("--n-boundary", type=int, default=256, help="development faces the boundary and PCA read")
    p.add_argument("--n-jacobian", type=int, default=4, help="development faces of the Jacobians")
    p.add_argument("--n-train", type=int, default=8, help="development faces of the global Δh and Δε")
    p.add_argument("--n-content", type=int, default=8, help="reference faces of content injection")
    p.add_argument("--epochs", type=int, default=2, help="epochs of the global Δh and Δε")
    p.add_argument("--k", type=int, default=3, help="unsupervised directions per method")
    p.add_argument("--curve-faces", type=int, default=16, help="faces of each strength-curve point")
    p.add_argument("--attributes", nargs="*", default=list(bm.TARGETS), choices=list(bm.TARGETS))
    p.add_argument("--methods", nargs="*", default=list(bm.METHODS), choices=list(bm.METHODS))
    p.add_argument("--no-curves", action="store_true")
    p.add_argument("--redo", nargs="*", default=[], choices=list(bm.METHODS), metavar="METHOD",
                   help="measure these methods' rows of --attributes again (their old rows and curves dropped)")
    p.add_argument("--curve-multipliers", nargs="*", type=float, default=[0.5, 2.0],
                   help="the strength curve's points, as multiples of the table's strength (default 0.5 2)")
    p.add_argument("--no-reconstruction", action="store_true", help="no reconstruction rows (a run beside another)")
    p.add_argument("--merge", nargs="*", default=None, metavar="JSON",
                   help="only merge the rows of these result files (runs made side by side) into --output")
    p.add_argument("--directions", default=None, help="folder of the shipped directions (default data/directions)")
    p.add_argument("--output", default=str(REPO / "benchmarks" / "hspace_methods.json"))
    p.add_argument("--cache", default=None, help="where fitted directions are kept (default: next to --output)")
    p.add_argument("--device", default="cpu")
    return p.parse_args(argv)


class Run:
    """The state of one comparison: the report, the faces, the cache, and writing as it goes."""

    def __init__(self, args):
        from asyrp_lib.beyond.directions import faces_without
        from asyrp_lib.models.profiles import load_profile

        self.args = args
        self.out = Path(args.output)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.cache = Path(args.cache) if args.cache else self.out.with_suffix(".cache")
        self.cache.mkdir(parents=True, exist_ok=True)
        self.report = json.loads(self.out.read_text()) if self.out.is_file() else {}
        self.report.setdefault("rows", {})
        self.report.setdefault("fits", {})
        self.report.setdefault("injection_sources", {})
        self.report.setdefault("skipped", {})
        for name in args.attributes:
            for method in args.redo:
                self.report["rows"].get(name, {}).pop(method, None)
                self.report["skipped"].pop(f"{name}: {method}", None)
        self.report.update(settings={k: v for k, v in vars(args).items() if k not in ("output", "cache")},
                           test_seed=TEST_SEED, dev_seed=DEV_SEED)
        self.profile = load_profile(args.profile, device=args.device)
        self.oracle = tw.Oracle.load(device=self.profile.device)
        self.bench = bm.Bench(self.profile, self.oracle, cache_dir=self.cache / "inversions")
        self.report["t_edit"], self.report["t_m"] = self.bench.t_edit, self.bench._t_m_step()
        self.report["n_steps"] = self.bench.editor.n_steps
        size = self.profile.image_size
        avoid = {bm.TARGETS[n][0]: bm.TARGETS[n][1] for n in ("hair colour", "smile", "glasses", "eyes")}
        self.test = faces_without(avoid, args.n_test, TEST_SEED, size=size, device=self.profile.device)
        self.directions = Path(args.directions) if args.directions else data_dir() / "directions"
        t0 = time.perf_counter()
        self.bench.editor.invert(self.test.images)
        self.invert_per_image = (time.perf_counter() - t0) / args.n_test
        self.report["invert_seconds_per_image"] = self.invert_per_image

    # -- bookkeeping -----------------------------------------------------------------------
    def has(self, name: str, method: str) -> bool:
        return method in self.report["rows"].get(name, {})

    def wanted(self, method: str) -> list[str]:
        return [n for n in self.args.attributes if method in self.args.methods and not self.has(n, method)]

    def save(self):
        self.report.update(commit=commit(), machine=machine(self.args.device),
                           date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
        done = sum(len(r) for r in self.report["rows"].values())
        self.report["missing"] = missing(self.report)
        self.report["complete"] = not self.report["missing"]
        self.out.write_text(json.dumps(self.report, indent=1, ensure_ascii=False))
        write_markdown(self.out.with_suffix(".md"), self.report)
        print(f"[{time.strftime('%H:%M:%S')}] {done} rows in {self.out}", file=sys.stderr, flush=True)

    def row(self, name: str, method: str, edited: torch.Tensor, strength: float, seconds: float, fit_seconds=None,
            **extra):
        attribute, value = bm.TARGETS[name][:2]
        r = bm.measure(self.test.images, {float(strength): edited}, attribute=attribute, target_value=value,
                       oracle=self.oracle, strength=strength, lpips=self.profile.lpips)
        r.update(fit_seconds=fit_seconds, edit_seconds_per_image=seconds / edited.shape[0] + self.invert_per_image,
                 **extra)
        self.report["rows"].setdefault(name, {})[method] = r
        self.save()

    def cached(self, key: str, fn):
        """A fitted thing and the seconds it took, computed once and kept in the cache folder."""
        path = self.cache / f"{key}.pt"
        if path.is_file():
            return torch.load(path, weights_only=False)
        t0 = time.perf_counter()
        value = fn()
        out = (value, time.perf_counter() - t0)
        torch.save(out, path)
        return out

    def skip(self, name: str, method: str, why) -> None:
        print(f"{name}: {method} skipped: {why}", file=sys.stderr)
        self.report["skipped"][f"{name}: {method}"] = str(why)

    def dev_faces(self, n: int, offset: int) -> torch.Tensor:
        attrs = tw.sample_attributes(n, DEV_SEED + offset)
        return tw.render(attrs, size=self.profile.image_size, device=self.profile.device)


# --------------------------------------------------------------------------------------------
# Stages
# --------------------------------------------------------------------------------------------
def stage_reconstruction(run: Run):
    names = [n for n in run.args.attributes if not run.has(n, "reconstruction")]
    if not names:
        return
    t0 = time.perf_counter()
    rec = run.bench.reconstruct(run.test.images)
    sec = time.perf_counter() - t0
    for n in names:
        run.row(n, "reconstruction", rec, 0.0, sec)


def h_bank(run: Run):
    """h at t_m of the boundary/PCA development faces, and the faces."""
    images = run.dev_faces(run.args.n_boundary, 1)
    h, sec = run.cached("h_bank", lambda: run.bench.collect_h(images))
    return images, h, sec


def stage_first(run: Run):
    for name in run.args.attributes:
        attribute, value, source, target, prompt, folder = bm.TARGETS[name]
        if name in run.wanted("Asyrp (f_t)"):
            path = run.directions / folder
            try:
                t0 = time.perf_counter()
                x = run.bench.edit_h(run.test.images, [[(str(path), 1.0)]])[0]
                run.row(name, "Asyrp (f_t)", x, 1.0, time.perf_counter() - t0, fit_seconds=None,
                        direction=str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path))
            except (ValueError, FileNotFoundError) as exc:
                run.skip(name, "Asyrp (f_t)", exc)
        for labels in ("oracle", "clip"):
            method = f"boundary ({'oracle' if labels == 'oracle' else 'CLIP'} labels)"
            if name not in run.wanted(method):
                continue
            images, h, h_sec = h_bank(run)
            t0 = time.perf_counter()
            try:
                b = run.bench.boundary(h, images, attribute, value, labels=labels, prompt=prompt)
            except ValueError as exc:
                run.skip(name, method, exc)
                continue
            fit = time.perf_counter() - t0 + h_sec
            chosen, choose_sec = run.cached(f"boundary_{labels}_{attribute}_{value}_strength",
                                            lambda: run.bench.boundary_strength(b, dev_named(run), attribute, value))
            if chosen["strength"] is None:
                run.skip(name, method, "no development face without the target to choose its strength on")
                continue
            c = chosen["strength"]
            t0 = time.perf_counter()
            x = run.bench.edit_h(run.test.images, [b.delta_h(c).to(run.profile.device)])[0]
            run.report["fits"].setdefault(method, {})[name] = {
                "train_accuracy": b.train_accuracy, "label_accuracy": b.label_accuracy, "distance": b.distance,
                "faces": int(h.shape[0]), "t": b.t, "strength": c, "strength_seconds": choose_sec,
                "dev_faces": chosen["n"], "dev_scores": {f"{k:g}": v for k, v in chosen["scores"].items()},
                "dev_success": chosen["success"], "dev_others_kept": chosen["others_kept"]}
            run.row(name, method, x, c, time.perf_counter() - t0, fit_seconds=fit + choose_sec,
                    label_accuracy=b.label_accuracy)
        if name in run.wanted("content injection"):
            contents = content_faces(run, attribute, value)
            t0 = time.perf_counter()
            x = run.bench.inject(run.test.images, contents, [0.5])[0]
            sec = time.perf_counter() - t0
            from asyrp_lib.beyond.injection import attribute_sources

            run.report["injection_sources"][name] = attribute_sources(run.oracle, run.test.images, contents, x)
            run.row(name, "content injection", x, 0.5, sec, fit_seconds=0.0)


def content_faces(run: Run, attribute: str, value: str) -> torch.Tensor:
    """--n-content development faces showing ``attribute = value``, repeated to one per test face."""
    picked, s = [], DEV_SEED + 2
    while len(picked) < run.args.n_content:
        for a in tw.sample_attributes(64, s):
            if ev.label_of(a, attribute) == value and a["hair"] != "none" and len(picked) < run.args.n_content:
                picked.append(a)
        s += 1
    images = tw.render(picked, size=run.profile.image_size, device=run.profile.device)
    reps = -(-run.args.n_test // len(picked))
    return images.repeat(reps, 1, 1, 1)[:run.args.n_test]


_CAND_STRENGTHS = bm.NAMING_STRENGTHS


def fit_unsupervised(run: Run, method: str):
    """(directions, stds, seconds) of one unsupervised method, cached."""
    images, h, h_sec = h_bank(run)
    jac_faces = run.dev_faces(run.args.n_jacobian, 3)
    k = run.args.k
    if method == "PCA of h":
        (v, s), sec = run.cached("pca", lambda: run.bench.pca(h, k))
        return v, s, sec + h_sec
    if method == "Jacobian ∂P_t/∂h":
        (v, s), sec = run.cached("jacobian", lambda: run.bench.jacobian(jac_faces, h, k))
        return v, s, sec
    (v, s), sec = run.cached("pullback", lambda: run.bench.pullback(jac_faces, k))
    return v, s, sec


def dev_named(run: Run) -> torch.Tensor:
    """The development faces on which the unsupervised directions are named and the boundaries' strengths chosen."""
    return run.dev_faces(run.args.n_dev, 4)


def stage_unsupervised(run: Run):
    dev = dev_named(run)
    targets = [bm.TARGETS[n][:2] for n in bm.TARGETS]  # named once for every attribute
    for method in UNSUPERVISED:
        names = run.wanted(method)
        if not names:
            continue
        v, s, fit_sec = fit_unsupervised(run, method)
        cands = bm.candidates(v, s, _CAND_STRENGTHS[method])
        key = {"PCA of h": "pca", "Jacobian ∂P_t/∂h": "jacobian", "pullback ∂h/∂x_t": "pullback"}[method]

        def name_them():
            deltas = list(cands.values())
            if method == "pullback ∂h/∂x_t":
                edits = run.bench.edit_pullback(dev, deltas)
            else:
                edits = run.bench.edit_h(dev, [d.to(run.profile.device) for d in deltas])
            return bm.match_candidates(run.oracle, dev, dict(zip(cands, edits)), targets)

        matches, match_sec = run.cached(f"{key}_names", name_them)
        run.report["fits"][method] = {"seconds": fit_sec, "naming_seconds": match_sec, "matches": matches,
                                      "std": [float(x) for x in s]}
        for name in names:
            attribute, value = bm.TARGETS[name][:2]
            m = matches[f"{attribute}={value}"]
            if m["best"] is None:
                run.skip(name, method, "not named (no development face without the target)")
                continue
            delta = cands[m["best"]]
            strength = float(m["best"].split("×")[1])
            t0 = time.perf_counter()
            if method == "pullback ∂h/∂x_t":
                x = run.bench.edit_pullback(run.test.images, [delta])[0]
            else:
                x = run.bench.edit_h(run.test.images, [delta.to(run.profile.device)])[0]
            run.row(name, method, x, strength, time.perf_counter() - t0, fit_seconds=fit_sec + match_sec,
                    named=m["best"], named_score=m["score"])


def stage_optimised(run: Run):
    for name in run.args.attributes:
        attribute, value, source, target = bm.TARGETS[name][:4]
        train = None
        for method in OPTIMISED:
            if name not in run.wanted(method):
                continue
            if train is None:
                train = ev.source_faces(attribute, value, run.args.n_train, seed=ev.DEV_SEED,
                                        size=run.profile.image_size, device=run.profile.device).images
            key = f"{'dh' if method == 'global Δh' else 'eps'}_{attribute}_{value}"
            fn = run.bench.train_delta_h if method == "global Δh" else run.bench.train_eps
            d, sec = run.cached(key, lambda: fn(train, source, target, run.args.epochs))
            t0 = time.perf_counter()
            if method == "global Δh":
                x = run.bench.edit_h(run.test.images, [d])[0]
            else:
                x = run.bench.edit_eps(run.test.images, d, [1.0])[0]
            run.row(name, method, x, 1.0, time.perf_counter() - t0, fit_seconds=sec)


def stage_curves(run: Run):
    n = min(run.args.curve_faces, run.args.n_test)
    faces = run.test.images[:n]
    for name in run.args.attributes:
        attribute, value, source, target, prompt, folder = bm.TARGETS[name]
        for method, r in list(run.report["rows"].get(name, {}).items()):
            if method == "reconstruction" or len(r.get("curve", [])) > 1 or method not in run.args.methods:
                continue
            s0 = r["strength"]
            ss = [m * s0 for m in run.args.curve_multipliers]
            if method == "content injection":
                ss = [min(1.0, m * s0) for m in run.args.curve_multipliers]
                contents = content_faces(run, attribute, value)[:n]
                xs = run.bench.inject(faces, contents, ss)
            elif method == "Asyrp (f_t)":
                xs = run.bench.edit_h(faces, [[(str(run.directions / folder), s)] for s in ss])
            elif method == "ε-shift":
                d, _ = run.cached(f"eps_{attribute}_{value}", lambda: None)
                xs = run.bench.edit_eps(faces, d, ss)
            else:
                delta = delta_of(run, name, method)
                if method == "pullback ∂h/∂x_t":
                    xs = run.bench.edit_pullback(faces, [delta * (s / s0) for s in ss])
                else:
                    xs = run.bench.edit_h(faces, [(delta * (s / s0)).to(run.profile.device) for s in ss])
            extra = bm.measure(faces, dict(zip(ss, xs)), attribute=attribute, target_value=value, oracle=run.oracle,
                               strength=ss[0])["curve"]
            r["curve"] = sorted(r["curve"] + extra, key=lambda p: p["strength"])
            run.save()


def delta_of(run: Run, name: str, method: str) -> torch.Tensor:
    """The Δ (at the chosen strength) of a row of a direction method, rebuilt from the cache."""
    attribute, value = bm.TARGETS[name][:2]
    if method == "global Δh":
        return run.cached(f"dh_{attribute}_{value}", lambda: None)[0]
    if method in UNSUPERVISED:
        v, s, _ = fit_unsupervised(run, method)
        r = run.report["rows"][name][method]
        return bm.candidates(v, s, _CAND_STRENGTHS[method])[r["named"]]
    images, h, _ = h_bank(run)
    labels = "oracle" if "oracle" in method else "clip"
    b = run.bench.boundary(h, images, attribute, value, labels=labels, prompt=bm.TARGETS[name][4])
    return b.delta_h(run.report["rows"][name][method]["strength"])


# --------------------------------------------------------------------------------------------
def missing(report: dict) -> list[str]:
    """"attribute: method" of every row of :data:`asyrp_lib.beyond.methods.TARGETS` × METHODS (and the
    reconstruction) not measured yet, or measured without its strength curve; skipped ones (``skipped``) aside."""
    out = []
    for name in bm.TARGETS:
        rows = report.get("rows", {}).get(name, {})
        for method in ("reconstruction", *bm.METHODS):
            key = f"{name}: {method}"
            if key in report.get("skipped", {}):
                continue
            if method not in rows:
                out.append(key)
            elif method != "reconstruction" and len(rows[method].get("curve", [])) < 3:
                out.append(f"{key} (strength curve)")
    return out


def write_markdown(path: Path, report: dict) -> None:
    s = report.get("settings", {})
    lines = ["# h-space editing methods side by side on held-out toy faces\n",
             f"{s.get('n_test')} held-out faces (none showing any of the four targets), every edit with η = 0 and "
             f"edited on [T, t_edit = {report.get('t_edit')}] ({report.get('n_steps')} DDIM steps; h read at "
             f"t_m = {report.get('t_m')}); measured by `scripts/compare_hspace_methods.py` at commit "
             f"{report.get('commit')} on {report.get('machine')}, {report.get('date')}.\n",
             "The strength of each boundary (in class-mean distances along its normal) was chosen on "
             f"{s.get('n_dev')} development faces among {', '.join(f'{c:g}' for c in bm.BOUNDARY_STRENGTHS)} by the "
             "rule that names the unsupervised directions (success × others kept on the faces without the target).\n",
             "x_T optimisation and the symmetric Δh are not rerun here: see `data/directions/comparison.md`. "
             "Times are wall-clock seconds on that machine, shared with other jobs while it ran: compare them within "
             "one table only. The fit of an unsupervised direction includes naming it on development faces.\n"]
    if report.get("merged"):
        side = "; ".join(f"commit {m.get('commit')}, {m.get('date')}" for m in report["merged"])
        lines.append(f"Some rows were measured by runs beside this one on the same faces and machine, merged in "
                     f"with --merge ({side}).\n")
    if not report.get("complete"):
        gaps = report.get("missing") or missing(report)
        lines.append("**Partial**: the run was stopped before every row was measured; missing rows are not measured "
                     f"(rerun the script to resume). Missing: {'; '.join(gaps)}.\n")
    for key, why in report.get("skipped", {}).items():
        lines.append(f"Skipped: {key} ({why}).\n")
    for name, rows in report["rows"].items():
        lines.append(f"## {name}\n")
        lines.append(bm.results_table(rows) + "\n")
        lines.append(bm.verdict(name, rows) + "\n")
    path.write_text("\n".join(lines))


def merge(out: Path, others) -> None:
    """Rows, fits and injection readings of ``others`` added to ``out`` where it has none (rows it has win; their
    strength curves take the other's points at strengths they lack, where both rows have the same strength)."""
    report = json.loads(out.read_text())
    for path in others:
        other = json.loads(Path(path).read_text())
        for name, rows in other.get("rows", {}).items():
            for method, row in rows.items():
                kept = report["rows"].setdefault(name, {}).setdefault(method, row)
                if kept is not row and kept.get("strength") == row.get("strength"):
                    points = {p["strength"]: p for p in row.get("curve", [])}
                    points.update({p["strength"]: p for p in kept.get("curve", [])})  # the kept row's own win
                    kept["curve"] = [points[k] for k in sorted(points)]
        for key in ("fits", "injection_sources", "skipped"):
            for k, v in other.get(key, {}).items():
                report.setdefault(key, {}).setdefault(k, v)
        report.setdefault("merged", []).append({k: other.get(k) for k in ("commit", "machine", "date", "settings")})
    order = ["reconstruction", *bm.METHODS]
    report["rows"] = {n: dict(sorted(r.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 99))
                      for n, r in report["rows"].items()}
    report["missing"] = missing(report)
    report["complete"] = not report["missing"]
    out.write_text(json.dumps(report, indent=1, ensure_ascii=False))
    write_markdown(out.with_suffix(".md"), report)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.merge is not None:
        merge(Path(args.output), args.merge)
        return 0
    torch.manual_seed(0)
    run = Run(args)
    if not args.no_reconstruction:
        stage_reconstruction(run)
    stage_first(run)  # the cheap methods on every attribute first: the leakage matrices fill up early
    stage_unsupervised(run)
    stage_optimised(run)
    if not args.no_curves:
        stage_curves(run)
    run.save()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
