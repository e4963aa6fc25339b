"""The course around the library: the exercises in which a student writes each piece of the method, the checks
that tell them what is wrong, and the grading of a folder of submitted notebooks.

- :mod:`asyrp_lib.course.checks` — the notebook API (``check("01.1", my_function)``) and the registry of the
  exercises; the checks of each notebook live in ``ex01_ddim`` … ``ex07_intervals``.
- :mod:`asyrp_lib.course.grading` — ``asyrp grade FOLDER``: run every submitted notebook with Jupyter's own
  executor and tabulate the points.

A wing of the library: it imports the paper's core to compare a student's function with the library's, and
nothing in the core imports it.
"""
