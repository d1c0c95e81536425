"""Shared fixtures."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """Train with one torch thread (a sweep's workers do): same numbers, no oversubscription."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
