"""The steps of grading one notebook (its cells, the grading cell, the row's status) with a stand-in kernel
client: fast, no kernel is started (tests/test_grading.py runs real kernels)."""
import asyncio
import json

import nbformat
from nbclient.exceptions import CellTimeoutError, DeadKernelError

from asyrp_lib.course import grading as G


class FakeClient:
    """Executes a cell by writing the outputs it is told to, or by raising."""

    def __init__(self, outputs: dict):
        self.outputs, self.timeout, self.shutdown_kernel, self.ran = outputs, None, None, []

    async def async_execute_cell(self, cell, index, store_history=True):
        self.ran.append(index)
        out = self.outputs.get(index, [])
        if isinstance(out, BaseException):
            raise out
        cell["outputs"] = out


def notebook(n_cells: int):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# 05 · title")] + [nbformat.v4.new_code_cell(f"x{i} = {i}")
                                                                   for i in range(n_cells)]
    return nb


def run(coro):
    return asyncio.run(coro)


ERROR = [{"output_type": "error", "ename": "NameError", "evalue": "name 'y' is not defined", "traceback": []}]


def grades(earned, points):
    text = G.MARKER + json.dumps({"exercises": [{"id": "05.1", "earned": earned, "points": points}]}) + "\n"
    return [{"output_type": "stream", "name": "stdout", "text": text}]


def test_cells_then_grades_then_a_status_naming_the_cell_that_raised():
    nb, row = notebook(3), G.Graded(student="s", file="f.ipynb", notebook="05_h_space")
    client = FakeClient({2: ERROR, 4: grades(2, 3)})
    assert run(G._run_cells(client, nb, row, timeout=60)) and client.ran == [1, 2, 3]
    assert row.errors == [{"cell": 3, "source": "x1 = 1", "error": "NameError: name 'y' is not defined"}]
    assert run(G._run_grade_cell(client, nb, row)) and row.earned == 2 and row.points == 3
    G._set_status(row)
    assert row.status == G.RAISED and row.message.startswith("cell 3 (`x1 = 1`) raised NameError")
    assert row.message.endswith("2/3 points")
    clean = G.Graded(student="s", file="f.ipynb", notebook="05_h_space", exercises=[{"earned": 1, "points": 1}])
    G._set_status(clean)
    assert (clean.status, clean.message) == (G.GRADED, "1/1 points")


def test_a_timeout_a_dead_kernel_and_a_grading_cell_that_prints_nothing_stop_with_a_reason():
    row = G.Graded(student="s", file="f.ipynb", notebook="05_h_space")
    client = FakeClient({2: CellTimeoutError("slow")})
    assert not run(G._run_cells(client, notebook(3), row, timeout=60))
    assert row.status == G.TIMED_OUT and "cell 3" in row.message and client.shutdown_kernel == "immediate"
    row = G.Graded(student="s", file="f.ipynb", notebook="05_h_space")
    assert not run(G._run_cells(FakeClient({1: DeadKernelError("gone")}), notebook(2), row, timeout=60))
    assert row.status == G.DIED and "cell 2" in row.message
    row = G.Graded(student="s", file="f.ipynb", notebook="05_h_space")
    assert not run(G._run_grade_cell(FakeClient({}), notebook(1), row))
    assert row.status == G.GRADING_FAILED and "printed no grades" in row.message
