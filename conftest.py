"""Repository-wide pytest hooks: every notebook that nbval runs is marked ``slow``, so that the contributors' fast
loop, ``pytest -m "not slow"``, leaves the notebooks out, while plain ``pytest`` (what CI runs) still runs them."""
import pytest


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by marker
def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.slow)
