"""The front ends: ``cli`` (the ``asyrp`` command), ``widgets`` (the notebooks' editor), ``plotting``."""
