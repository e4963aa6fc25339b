import os

import pytest
import torch

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def tiny():
    """The tiny profile (random weights), loaded once per test session."""
    from asyrp_lib.models.profiles import load_profile

    return load_profile("tiny", device="cpu")


@pytest.fixture
def images():
    """A small batch of smooth random images in [-1, 1] (N=3, 3×32×32)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 3, 8, 8, generator=g)
    return torch.nn.functional.interpolate(x, size=32, mode="bilinear", align_corners=False).tanh()
