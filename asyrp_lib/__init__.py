"""asyrp_lib: semantic image editing in the h-space of diffusion models (Asyrp), for the asyrp-course notebooks.

The package is a house (ARCHITECTURE.md): the paper's method in ``core`` (in the order the course teaches it:
``ddim``, ``hspace``, ``process``, ``loss`` and ``clip_loss``, ``delta_net``, ``train``, ``intervals``,
``editing``, ``naive``, ``pipeline``), and around it ``models`` (profiles, U-Nets, CLIP, LPIPS and their weights),
``toy`` (the toy face world, its oracle and the measurements of an edit), ``beyond`` (additions beyond the paper:
checks after an edit, properties of directions, the method comparison), ``front`` (the ``asyrp`` command, the
widgets, plots) and ``course`` (the notebooks' exercise checks). ``_utils`` and ``images`` are the ground floor.

The modules' earlier flat names keep working: ``import asyrp_lib.ddim``, ``from asyrp_lib.ddim import X`` and
``from asyrp_lib import ddim`` give the module ``asyrp_lib.core.ddim`` itself (``MOVED`` lists every old name).
Nothing is imported until it is asked for.
"""
import importlib
import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"

#: Old flat module name → its module now (ARCHITECTURE.md has the same table).
MOVED = {
    "ddim": "core.ddim",
    "hspace": "core.hspace",
    "process": "core.process",
    "loss": "core.loss",
    "delta_net": "core.delta_net",
    "train": "core.train",
    "intervals": "core.intervals",
    "editing": "core.editing",
    "naive": "core.naive",
    "pipeline": "core.pipeline",
    "cache": "core.cache",
    "profiles": "models.profiles",
    "unets": "models.unets",
    "hub": "models.hub",
    "clip": "models.clip",
    "perceptual": "models.perceptual",
    "tokenizer_build": "models.tokenizer_build",
    "toyworld": "toy.toyworld",
    "toyattributes": "toy.toyattributes",
    "oracle": "toy.oracle",
    "evaluate": "toy.evaluate",
    "retry": "beyond.retry",
    "directions": "beyond.directions",
    "cli": "front.cli",
    "widgets": "front.widgets",
    "plotting": "front.plotting",
}


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers ``asyrp_lib.<old name>`` with the moved module: the same object, entered in ``sys.modules``
    under both names."""

    def find_spec(self, fullname, path=None, target=None):
        package, _, old = fullname.rpartition(".")
        if package != __name__ or old not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def __init__(self):
        self._own_spec = {}

    def create_module(self, spec):
        module = importlib.import_module(f"{__name__}.{MOVED[spec.name.rpartition('.')[2]]}")
        self._own_spec[spec.name] = module.__spec__
        return module

    def exec_module(self, module):
        # the import machinery has stamped the alias' spec on the moved module: give it its own back
        module.__spec__ = self._own_spec.pop(module.__spec__.name)


if not any(isinstance(f, _Alias) for f in sys.meta_path):
    sys.meta_path.insert(0, _Alias())


def __getattr__(name):
    """``asyrp_lib.ddim`` (attribute access, ``from asyrp_lib import ddim``): the moved module."""
    if name in MOVED:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
