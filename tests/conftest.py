"""Suite-wide settings.

The tests use small tensors, where torch's intra-op threads only add synchronization: on a busy
two-core machine two OpenMP threads wait for each other (a tiny U-Net training test took 12 s on
one thread and 70-290 s on two). Every test runs single-threaded; subprocess tests (torchrun) set
OMP_NUM_THREADS=1 themselves.
"""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
