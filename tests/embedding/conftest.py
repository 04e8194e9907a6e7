"""The embedding tests use tiny tensors, where torch's intra-op threads only add synchronization
(10x slower on a loaded 2-core machine): run them single-threaded, restoring the setting after."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
