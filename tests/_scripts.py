"""A script of the repository (scripts/, benchmarks/) loaded as a module, so that tests can call its functions."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_script(relative_path: str):
    """The module of ``ROOT / relative_path``, executed once per call (e.g. "scripts/compare_methods.py")."""
    path = ROOT / relative_path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
