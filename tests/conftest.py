"""Shared fixtures."""

import pytest


@pytest.fixture
def one_torch_thread():
    """Tiny torch models: one intra-op thread avoids spin-waiting on a busy 2-core machine."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
