"""Additions beyond the paper: ``retry`` (checks after an edit, ``keep``), ``directions`` (properties of the
shipped directions, unsupervised directions), ``compare`` (the methods side by side in the toy world)."""
