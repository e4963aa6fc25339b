r"""Grading a folder of submitted notebooks: ``asyrp grade FOLDER`` (also ``python -m asyrp_lib.course.grading
FOLDER``) prints a table, student × exercise, of the points earned, and writes it as JSON with ``--json FILE``.

Each submitted notebook is run with Jupyter's own executor (nbclient), in a kernel of the grader's Python
environment (``ASYRP_PROFILE`` and the rest of the environment inherited; ``--profile`` sets it), with the
notebook's folder as the working directory, every cell in order (a cell that raises is noted and the run goes on,
as ``jupyter nbconvert --execute --allow-errors`` would). Then one more cell, run in the same kernel, grades: for
each exercise of that notebook (:func:`asyrp_lib.course.checks.exercises`) it takes the functions the student
last handed to ``check`` (:func:`~asyrp_lib.course.checks.submitted`) or, where the check cell never ran, the
functions of those names in the kernel's namespace, evaluates them on fresh random inputs
(:func:`~asyrp_lib.course.checks.evaluate`, a new seed) and prints one JSON line, which the grader reads back
from that cell's output alone. The points are therefore the ones the student's own check cells show, drawn
again.

Folder layout (see :data:`LAYOUT`): ``FOLDER/<student>/…/*.ipynb`` (a folder per student, as an LMS or a shared
drive hands them out), ``FOLDER/<student>.ipynb`` or ``FOLDER/<student>_<anything>.ipynb`` (one file per
submission: the student is the name up to the first ``_``), and files named as the course's notebooks,
``FOLDER/NN_name.ipynb``, which are one student's, named after FOLDER (so the course's own folder of notebooks,
or a folder of solved ones from ``scripts/solve_notebooks.py``, grades as one row). Which course notebook a file
is comes from its first cell's Colab badge (``…/notebooks/NN_name.ipynb``), else its title ``# NN · …``, else its
file name (``…NN_name…``); the report says which.

Every submission gets its row, whatever happens to the others: a cell that raised (which cell, the error; the
exercises are graded from what the kernel holds), a run past ``--timeout`` seconds (the kernel is killed; "timed
out after N s"), a file that is not valid JSON or nbformat, a notebook that is none of the course's, a kernel that
died, and the course's notebooks without graded exercises (00, 08, 09: reported as such, not run).

Exit status: 0 when the folder was graded, however many points the students lost or whatever their notebooks
did; 2 when there is nothing to grade (no such folder, no notebook in it) or an argument is wrong; 1 when the
grader itself could not run (nbclient or ipykernel missing, or no kernel could be started).

Why not nbgrader or otter-grader (both read, at nbgrader 0.9.6 and otter-grader 7.0.0):

- nbgrader's ``autograde`` works over a course directory ``{source,release,submitted,autograded}/<student>/
  <assignment>/<notebook>.ipynb`` and a gradebook database (SQLite through SQLAlchemy) in which the assignment,
  its notebooks and the students must already exist (it stops with "No assignment with ID … exists in the
  database" and skips notebooks ``generate_assignment`` did not record); it scores *grade cells* marked in the
  cell metadata (``metadata.nbgrader``: ``grade_id``, ``points``, checksums), a test cell earning its points when
  its output has no error (and nothing on stderr), and rewrites those cells from the instructor's source version
  before running. The course's
  notebooks carry no such metadata and the notebooks Colab opens would have to become ``generate_assignment``'s
  release versions, while our exercises are already graded by checks with points per function and a message
  naming the wrong term; nbgrader would add a database, a course directory and hidden test cells to reach less.
  It also bounds the Jupyter front ends (``jupyterlab>=4.2,<5``, ``notebook>=7.2,<8``).
- otter-grader's ``otter grade`` runs every submission in a Docker container whose image it builds from
  ``ubuntu:22.04`` with ``apt-get`` and the assignment's set-up script (python-on-whales), which needs a Docker
  daemon and the network; ``otter run`` grades without a container but one submission at a time, needs an
  ``autograder.zip`` built by ``otter assign``/``otter generate`` from the assignment's test files, and runs the
  notebook in a temporary copy rather than in its folder. Its client (``otter.Notebook().check``) works on
  Colab but would duplicate ``check``. It would also bring pandas, jupytext, nbconvert[webpdf], ipylab and
  python-on-whales into the course's environment.

Both execute notebooks with nbclient/nbconvert underneath; this module uses nbclient directly, which Colab and a
Jupyter installation already have, and the course's own checks, so that what a student sees under a check cell
(on Colab or offline) is what the instructor's table counts.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .._args import positive_float_arg, positive_int_arg

__all__ = ["COURSE_NOTEBOOKS", "LAYOUT", "Submission", "Graded", "find_submissions", "student_of_file",
           "identify", "grade_folder", "table", "report", "to_json", "add_arguments", "main", "DEFAULT_TIMEOUT",
           "GRADE_CELL_TIMEOUT"]

#: The course's notebooks (their stems), in order.
COURSE_NOTEBOOKS = ("00_tour", "01_ddim", "02_directional_clip", "03_lpips", "04_naive_edits", "05_h_space",
                    "06_training_f_t", "07_intervals", "08_playground", "09_beyond",
                    "10_hspace_methods")
#: Seconds a notebook's cells may run in all before its kernel is killed (the toy profile's slowest notebook
#: takes about 3 min on a 2-core CPU).
DEFAULT_TIMEOUT = 600
#: Seconds the injected grading cell may run (the checks take well under a second each).
GRADE_CELL_TIMEOUT = 120
#: What the injected cell prints before its JSON.
MARKER = "ASYRP-GRADE "

LAYOUT = """\
folder layout (one of, mixed as you like):
  FOLDER/<student>/.../*.ipynb       a folder per student, any notebooks in it (subfolders too)
  FOLDER/<student>.ipynb             one file per submission; the student is the file name
  FOLDER/<student>_<anything>.ipynb  ... up to its first "_" (e.g. alice_05_h_space.ipynb)
  FOLDER/NN_name.ipynb               files named as the course's notebooks are one student's, named
                                     after FOLDER (e.g. a folder of solved notebooks)
Files and folders whose names start with "." or "__" are skipped. Which course notebook a file is: its
first cell's Colab badge (.../notebooks/NN_name.ipynb), else its title "# NN · ...", else its file name."""

# Statuses of a notebook's row.
GRADED, RAISED, TIMED_OUT, DIED = "graded", "raised", "timed out", "kernel died"
INVALID, NOT_COURSE, NO_EXERCISES = "invalid", "not a course notebook", "no exercises"
GRADING_FAILED, KERNEL_FAILED = "grading failed", "kernel failed"
#: Statuses whose exercises carry points (a cell may have raised: the kernel's namespace is graded).
SCORED = (GRADED, RAISED)
#: Statuses of a course notebook with exercises that ran but could not be graded.
UNGRADED = (TIMED_OUT, DIED, GRADING_FAILED, KERNEL_FAILED)

_COURSE_FILE = re.compile(r"^\d\d_")
_BADGE = re.compile(r"colab\.research\.google\.com/[^\s)\"'<>]*?/notebooks/(\d\d_\w+)\.ipynb")
_TITLE = re.compile(r"^\s*#\s+(\d\d)\s*·", re.M)


class GraderError(RuntimeError):
    """The grader itself cannot run (exit status 1)."""


# --------------------------------------------------------------------------------------------
# The folder
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Submission:
    student: str
    path: Path
    file: str  # the path relative to the graded folder (for the report)


def _skipped(name: str) -> bool:
    return name.startswith(".") or name.startswith("__")


def student_of_file(stem: str, folder_name: str) -> str:
    """The student of a notebook lying directly in the graded folder: the name up to its first ``_``; a file named
    as a course notebook (``NN_…``) is the folder's."""
    if _COURSE_FILE.match(stem):
        return folder_name
    return stem.split("_", 1)[0] or stem


def find_submissions(folder: Path) -> list[Submission]:
    """Every notebook of the folder, with its student (see :data:`LAYOUT`); a single ``.ipynb`` file is graded
    alone."""
    folder = Path(folder)
    if folder.is_file():
        if folder.suffix != ".ipynb":
            raise FileNotFoundError(f"{folder} is neither a folder nor a notebook (.ipynb)")
        return [Submission(student_of_file(folder.stem, folder.resolve().parent.name), folder, folder.name)]
    found = []
    name = folder.resolve().name
    for entry in sorted(folder.iterdir()):
        if _skipped(entry.name):
            continue
        if entry.is_dir():
            for path in sorted(entry.rglob("*.ipynb")):
                rel = path.relative_to(entry)
                if path.is_file() and not any(_skipped(p) for p in rel.parts):
                    found.append(Submission(entry.name, path, path.relative_to(folder).as_posix()))
        elif entry.suffix == ".ipynb" and entry.is_file():
            found.append(Submission(student_of_file(entry.stem, name), entry, entry.name))
    return found


def _source(cell) -> str:
    src = cell.get("source", "") if isinstance(cell, dict) else ""
    return "".join(src) if isinstance(src, list) else str(src)


def identify(nb: dict | None, filename: str) -> tuple[str | None, str | None]:
    """(course notebook, how it was found): from the first cell's Colab badge, else the title ``# NN · …`` of one
    of the first cells, else the file name; ``(None, None)`` when none names a course notebook."""
    cells = nb.get("cells") if isinstance(nb, dict) else None
    cells = cells if isinstance(cells, list) else []
    if cells:
        m = _BADGE.search(_source(cells[0]))
        if m and m.group(1) in COURSE_NOTEBOOKS:
            return m.group(1), "Colab badge"
    for cell in cells[:3]:
        if isinstance(cell, dict) and cell.get("cell_type") == "markdown":
            m = _TITLE.search(_source(cell))
            if m:
                found = [n for n in COURSE_NOTEBOOKS if n.startswith(m.group(1) + "_")]
                if found:
                    return found[0], "title"
    stem = Path(filename).stem
    for name in COURSE_NOTEBOOKS:
        if re.search(rf"(?:^|[^0-9]){re.escape(name)}(?:$|[^a-z])", stem):
            return name, "file name"
    return None, None


# --------------------------------------------------------------------------------------------
# One notebook
# --------------------------------------------------------------------------------------------
@dataclass
class Graded:
    """One submitted notebook's row."""

    student: str
    file: str
    notebook: str | None = None  # the course notebook it is ("05_h_space")
    identified_by: str | None = None  # "Colab badge", "title", "file name"
    status: str = GRADED
    message: str = ""
    exercises: list[dict] = field(default_factory=list)  # checks.Result.to_dict(), plus "source"
    errors: list[dict] = field(default_factory=list)  # cells that raised: {"cell": n, "error": "…"}
    seconds: float = 0.0

    @property
    def earned(self) -> int:
        return sum(int(e.get("earned", 0)) for e in self.exercises)

    @property
    def points(self) -> int:
        return sum(int(e.get("points", 0)) for e in self.exercises)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["earned"], d["points"] = self.earned, self.points
        d["seconds"] = round(self.seconds, 1)
        return d


def _course_exercises(notebook: str) -> list:
    from . import checks

    return checks.exercises(notebook)


def _read(path: Path) -> tuple[object | None, str | None, dict | None]:
    """(nbformat notebook, why it is not one, the raw JSON when it parsed)."""
    import nbformat

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"cannot be read ({type(exc).__name__}: {exc})", None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON ({exc})", None
    try:
        nb = nbformat.reads(text, as_version=4)
        nbformat.validate(nb)
    except Exception as exc:  # nbformat's ValidationError, NBFormatError, KeyError on a missing field …
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return None, f"not a valid notebook (nbformat: {first[:200]})", raw if isinstance(raw, dict) else None
    return nb, None, raw


def _first_line(source: str) -> str:
    line = next((s.strip() for s in source.splitlines() if s.strip()), "")
    return line if len(line) <= 40 else line[:39] + "…"


def _grade_cell_source(notebook: str) -> str:
    return f'''\
def _asyrp_grade(notebook, marker):
    import json, sys
    from asyrp_lib.course import checks
    namespace = globals()
    graded = []
    for ex in checks.exercises(notebook):
        functions, source = checks.submitted(ex.id), "check"
        if functions is None:
            functions, source = {{name: namespace.get(name) for name in ex.names}}, "namespace"
        try:
            entry = checks.evaluate(ex.id, functions).to_dict()
        except Exception as exc:
            entry = {{"exercise": ex.id, "title": ex.title, "points": ex.points, "earned": 0, "parts": [],
                     "error": f"{{type(exc).__name__}}: {{exc}}"}}
        entry["source"] = source
        graded.append(entry)
    sys.stdout.write(marker + json.dumps({{"exercises": graded}}) + "\\n")
    sys.stdout.flush()


_asyrp_grade({notebook!r}, {MARKER!r})
del _asyrp_grade
'''


def _kernel_manager():
    """A kernel of the grader's own Python (not whatever kernelspec ``python3`` names on this machine)."""
    from ipykernel.kernelspec import RESOURCES, get_kernel_dict
    from jupyter_client import AsyncKernelManager
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager

    class CurrentEnvironment(KernelSpecManager):
        def get_kernel_spec(self, kernel_name, *args, **kwargs):
            return KernelSpec(resource_dir=RESOURCES, **get_kernel_dict())

    return AsyncKernelManager(kernel_name="python3", kernel_spec_manager=CurrentEnvironment())


def _kernel_env(profile: str | None) -> dict:
    env = dict(os.environ)
    if profile:
        env["ASYRP_PROFILE"] = profile
    # the kernel imports the same asyrp_lib as the grader, whatever the notebook's folder holds
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def _stdout_of(cell) -> str:
    return "".join(_source({"source": o.get("text", "")}) for o in cell.get("outputs", [])
                   if o.get("output_type") == "stream" and o.get("name") == "stdout")


def _cell_error(cell) -> str | None:
    for o in cell.get("outputs", []):
        if o.get("output_type") == "error":
            value = (str(o.get("evalue", "")).strip().splitlines() or [""])[0][:200]
            return f"{o.get('ename', 'Error')}" + (f": {value}" if value else "")
    return None


async def _execute(nb, sub: Submission, row: Graded, *, timeout: float, env: dict) -> None:
    """Run the notebook's cells, then the grading cell, filling ``row`` in."""
    from nbclient import NotebookClient

    client = NotebookClient(nb, km=_kernel_manager(), timeout=int(timeout), allow_errors=True,
                            resources={"metadata": {"path": str(sub.path.parent.resolve())}})
    try:
        # the kernel process's own stderr (ipykernel's start-up warnings) is not the notebook's: discard it
        setup = client.async_setup_kernel(env=env, cleanup_kc=True, stderr=subprocess.DEVNULL)
        await setup.__aenter__()
    except Exception as exc:
        row.status, row.message = KERNEL_FAILED, f"the kernel did not start ({type(exc).__name__}: {exc})"
        return
    failure: BaseException | None = None
    try:
        if await _run_cells(client, nb, row, timeout) and await _run_grade_cell(client, nb, row):
            _set_status(row)
    except BaseException as exc:  # noqa: BLE001 (re-raised after the kernel is stopped)
        failure = exc
        raise
    finally:
        if failure is not None:
            client.shutdown_kernel = "immediate"
        try:
            await setup.__aexit__(None, None, None)
        except Exception:  # the kernel is gone already
            pass


async def _run_cells(client, nb, row: Graded, timeout: float) -> bool:
    """The notebook's code cells in order, within ``timeout`` in all; each cell's error noted in ``row``. ``False``
    (``row`` says why) when the time ran out or the kernel died."""
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    deadline = time.monotonic() + timeout
    for index, cell in enumerate(list(nb.cells)):
        if cell.cell_type != "code":
            continue
        remaining = deadline - time.monotonic()
        try:
            if remaining <= 0:
                raise CellTimeoutError(f"no time left for cell {index + 1}")
            client.timeout = max(1, math.ceil(remaining))
            await client.async_execute_cell(cell, index)
        except CellTimeoutError:
            client.shutdown_kernel = "immediate"
            row.status = TIMED_OUT
            row.message = (f"timed out after {timeout:g} s (in cell {index + 1}, "
                           f"`{_first_line(cell.source)}`); kernel stopped, not graded")
            return False
        except DeadKernelError:
            row.status = DIED
            row.message = (f"kernel died in cell {index + 1} (`{_first_line(cell.source)}`: out of memory, "
                           "or the process ended); not graded")
            return False
        error = _cell_error(cell)
        if error:
            row.errors.append({"cell": index + 1, "source": _first_line(cell.source), "error": error})
    return True


async def _run_grade_cell(client, nb, row: Graded) -> bool:
    """The grading cell, appended to the notebook; its grades into ``row.exercises``. ``False`` (``row`` says
    why) when it did not grade."""
    import nbformat
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    grade = nbformat.v4.new_code_cell(_grade_cell_source(row.notebook))
    nb.cells.append(grade)
    client.timeout = GRADE_CELL_TIMEOUT
    try:
        await client.async_execute_cell(grade, len(nb.cells) - 1, store_history=False)
    except CellTimeoutError:
        client.shutdown_kernel = "immediate"
        row.status = GRADING_FAILED
        row.message = (f"the grading cell ran past {GRADE_CELL_TIMEOUT} s (a function that never returns?); "
                       "not graded")
        return False
    except DeadKernelError:
        row.status, row.message = DIED, "kernel died while grading (out of memory?); not graded"
        return False
    lines = [s for s in _stdout_of(grade).splitlines() if s.startswith(MARKER)]
    try:
        row.exercises = list(json.loads(lines[-1][len(MARKER):])["exercises"])
    except (IndexError, ValueError, KeyError, TypeError):
        row.status = GRADING_FAILED
        row.message = f"the grading cell failed ({_cell_error(grade) or 'it printed no grades'})"
        return False
    return True


def _set_status(row: Graded) -> None:
    """Graded, or graded with the first cell that raised named."""
    if row.errors:
        first = row.errors[0]
        more = len(row.errors) - 1
        row.status = RAISED
        row.message = (f"cell {first['cell']} (`{first['source']}`) raised {first['error']}"
                       + (f" ({more} more cell{'s' if more > 1 else ''} raised after it)" if more else "")
                       + f"; graded what the kernel held: {row.earned}/{row.points} points")
    else:
        row.status, row.message = GRADED, f"{row.earned}/{row.points} points"


async def _grade_one(sub: Submission, *, timeout: float, env: dict, executed: Path | None) -> Graded:
    started = time.monotonic()
    row = Graded(sub.student, sub.file)
    nb, invalid, raw = _read(sub.path)
    row.notebook, row.identified_by = identify(nb if nb is not None else raw, sub.path.name)
    if invalid:
        row.status, row.message = INVALID, invalid
    elif row.notebook is None:
        row.status = NOT_COURSE
        row.message = ("not a course notebook: no Colab badge …/notebooks/NN_name.ipynb in its first cell, no "
                       "title \"# NN · …\", no course notebook's name in its file name; not run")
    elif not _course_exercises(row.notebook):
        row.status, row.message = NO_EXERCISES, f"{row.notebook} has no graded exercises; not run"
    else:
        try:
            await _execute(nb, sub, row, timeout=timeout, env=env)
        except Exception as exc:  # the executor's own failure: this row says so, the others are still graded
            row.status, row.exercises = GRADING_FAILED, []
            row.message = f"the grader failed on this notebook ({type(exc).__name__}: {exc})"
        if executed is not None:
            import nbformat

            out = executed / sub.file
            out.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, str(out))
    row.seconds = time.monotonic() - started
    return row


def _require_jupyter() -> None:
    missing = []
    for module in ("nbclient", "nbformat", "ipykernel", "jupyter_client"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise GraderError(f"grading needs {', '.join(missing)}: pip install -e \".[notebooks]\" "
                          "(or pip install nbclient ipykernel)")


def _progress(text: str) -> None:
    print(f"grade: {text}", file=sys.stderr, flush=True)


async def _grade_all(subs, *, timeout, env, executed, jobs) -> list[Graded]:
    gate = asyncio.Semaphore(max(1, int(jobs)))
    n = len(subs)

    async def one(k: int, sub: Submission) -> Graded:
        async with gate:
            _progress(f"[{k}/{n}] {sub.student} · {sub.file} …")
            row = await _grade_one(sub, timeout=timeout, env=env, executed=executed)
            what = f"{row.notebook} ({row.identified_by})" if row.notebook else "?"
            _progress(f"[{k}/{n}] {sub.student} · {sub.file} → {what}: {row.status}"
                      + (f", {row.earned}/{row.points} points" if row.status in SCORED else "")
                      + f" ({row.seconds:.1f} s)")
            return row

    return list(await asyncio.gather(*(one(k + 1, s) for k, s in enumerate(subs))))


def grade_folder(folder, *, timeout: float = DEFAULT_TIMEOUT, profile: str | None = None, jobs: int = 1,
                 executed=None) -> list[Graded]:
    """Grade every notebook of ``folder`` (one :class:`Graded` row each, in the folder's order)."""
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"no folder {folder}")
    subs = find_submissions(folder)
    if not subs:
        raise FileNotFoundError(f"no notebook (.ipynb) in {folder}")
    _require_jupyter()
    env = _kernel_env(profile)
    executed = Path(executed) if executed else None
    return asyncio.run(_grade_all(subs, timeout=timeout, env=env, executed=executed, jobs=jobs))


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------
def _rank(row: Graded) -> tuple:
    return (row.status in SCORED, row.earned, row.status == GRADED)


def table(rows: list[Graded]) -> dict:
    """Students × exercises: the exercises of every course notebook found; for each student the best-scoring of
    their notebooks of each course notebook."""
    notebooks = sorted({r.notebook for r in rows if r.notebook})
    exercises = [ex for name in notebooks for ex in _course_exercises(name)]
    students = []
    for student in sorted({r.student for r in rows}):
        mine = [r for r in rows if r.student == student]
        cells = {}
        for ex in exercises:
            candidates = sorted((r for r in mine if r.notebook == ex.notebook), key=_rank, reverse=True)
            best = candidates[0] if candidates else None
            entry = next((e for e in best.exercises if e.get("exercise") == ex.id), None) if best else None
            if best is None or best.status in (INVALID, NOT_COURSE):
                cells[ex.id] = {"earned": 0, "points": ex.points, "status": "missing"}
            elif best.status in SCORED and entry is not None:
                cells[ex.id] = {"earned": int(entry.get("earned", 0)), "points": ex.points, "status": "graded",
                                "file": best.file}
            else:
                cells[ex.id] = {"earned": 0, "points": ex.points, "status": "not graded", "file": best.file}
        students.append({"student": student, "earned": sum(c["earned"] for c in cells.values()),
                         "points": sum(c["points"] for c in cells.values()), "exercises": cells})
    return {"exercises": [{"id": ex.id, "notebook": ex.notebook, "title": ex.title, "points": ex.points}
                          for ex in exercises], "students": students}


def report(rows: list[Graded], *, seconds: float | None = None) -> str:
    """The text the instructor reads: the table, then one line per notebook (and what lost points)."""
    t = table(rows)
    ids = [e["id"] for e in t["exercises"]]
    lines = []
    if ids:
        lines.append("Points per exercise (earned/points; — no notebook for it; × its notebook could not be "
                     "graded, see below)")
    else:
        lines.append("No graded exercises in these notebooks")
    header = ["student"] + ids + ["total"]
    body = []
    for s in t["students"]:
        marks = {"graded": lambda c: f"{c['earned']}/{c['points']}", "missing": lambda c: "—",
                 "not graded": lambda c: "×"}
        body.append([s["student"]] + [marks[s["exercises"][i]["status"]](s["exercises"][i]) for i in ids]
                    + [f"{s['earned']}/{s['points']}"])
    widths = [max(len(r[k]) for r in [header] + body) for k in range(len(header))]
    for r in [header] + body:
        lines.append("  ".join(r[0].ljust(widths[0]) if k == 0 else r[k].rjust(widths[k])
                               for k in range(len(r))).rstrip())
    lines.append("")
    lines.append(f"Notebooks ({len(rows)}" + (f", {seconds:.0f} s" if seconds is not None else "") + ")")
    ws = max(len(r.student) for r in rows)
    wf = max(len(r.file) for r in rows)
    labels = [f"{r.notebook} ({r.identified_by})" if r.notebook else "—" for r in rows]
    wl = max(len(label) for label in labels)
    for r, label in zip(rows, labels):
        took = f" ({r.seconds:.1f} s)" if r.status in SCORED + UNGRADED else ""
        message = r.message[len(r.status):].lstrip(" :") if r.message.startswith(r.status) else r.message
        lines.append(f"{r.student:<{ws}}  {r.file:<{wf}}  {label:<{wl}}  {r.status}: {message}{took}")
        for e in r.exercises:
            if e.get("error"):
                lines.append(f"    {e['exercise']} could not be checked: {e['error']}")
            for p in e.get("parts", []):
                if p.get("status") == "wrong":
                    lines.append(f"    {e['exercise']} {p['name']} ✗ {p['message']}")
    return "\n".join(lines)


def to_json(rows: list[Graded], *, folder=None, timeout=None, profile=None, seconds=None) -> dict:
    t = table(rows)
    return {"folder": str(Path(folder).resolve()) if folder is not None else None, "timeout_s": timeout,
            "profile": profile or os.environ.get("ASYRP_PROFILE"), "seconds": round(seconds, 1) if seconds else None,
            "exercises": t["exercises"], "students": t["students"], "notebooks": [r.to_dict() for r in rows]}


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------
DESCRIPTION = """\
Grade a folder of submitted course notebooks: run each with Jupyter's executor (nbclient) in its own
folder, then grade its exercises with the course's checks in the same kernel (the functions last handed
to check(), else those of the kernel's namespace, on fresh random inputs). Prints the table student ×
exercise (points) and one line per notebook on stdout, progress on stderr."""
EPILOG = LAYOUT + """

exit status: 0 when the folder was graded (whatever the points); 2 when there is nothing to grade or an
argument is wrong; 1 when the grader could not run (nbclient/ipykernel missing, no kernel started)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", metavar="FOLDER", help="the submissions (layout below), or one .ipynb file")
    p.add_argument("--json", metavar="FILE", default=None, help="also write the table and every notebook's "
                   "result (points, status, what was wrong) as JSON")
    p.add_argument("--timeout", type=positive_float_arg, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                   help=f"time limit for one notebook's cells; past it the kernel is killed and the row says "
                        f"'timed out' (default {DEFAULT_TIMEOUT})")
    p.add_argument("--profile", default=None, help="ASYRP_PROFILE for the notebooks (default: inherited from "
                   "the environment; the notebooks fall back on toy without a GPU)")
    p.add_argument("--jobs", type=positive_int_arg, default=1, metavar="N", help="notebooks run at once (default 1)")
    p.add_argument("--executed", metavar="FOLDER", default=None,
                   help="save each executed notebook (its outputs, and the grading cell at the end) under "
                        "FOLDER, in the submissions' layout")


def run(args) -> int:
    """``asyrp grade``: the exit status (see :data:`EPILOG`)."""
    start = time.monotonic()
    try:
        rows = grade_folder(args.folder, timeout=args.timeout, profile=args.profile, jobs=args.jobs,
                            executed=args.executed)
    except OSError as exc:  # no such folder, nothing in it, unreadable
        print(f"asyrp grade: error: {exc}", file=sys.stderr)
        return 2
    except GraderError as exc:
        print(f"asyrp grade: error: {exc}", file=sys.stderr)
        return 1
    seconds = time.monotonic() - start
    print(report(rows, seconds=seconds))
    if args.json:
        Path(args.json).write_text(json.dumps(to_json(rows, folder=args.folder, timeout=args.timeout,
                                                      profile=args.profile, seconds=seconds),
                                              indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        _progress(f"wrote {args.json}")
    needed = [r for r in rows if r.status not in (INVALID, NOT_COURSE, NO_EXERCISES)]
    if needed and all(r.status == KERNEL_FAILED for r in needed):
        print("asyrp grade: error: no kernel could be started", file=sys.stderr)
        return 1
    return 0


def build_parser(prog: str = "python -m asyrp_lib.course.grading") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except KeyboardInterrupt:
        print("asyrp grade: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
