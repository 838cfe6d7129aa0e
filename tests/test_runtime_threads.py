"""runtime.release_openmp_threads: the calling thread's idle OpenMP workers exit (a server loads its
model on one thread and runs it on another; two teams on 2 cores make every small op sleep and wake)."""

import os
import sys
from pathlib import Path

import pytest
import torch

from unetkit.runtime import release_openmp_threads


def thread_count() -> int:
    return len(os.listdir("/proc/self/task"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self (Linux)")
def test_idle_openmp_workers_of_this_thread_exit_and_come_back_when_needed():
    if not any("libgomp" in line for line in Path("/proc/self/maps").read_text().splitlines()):
        pytest.skip("this torch build does not use libgomp")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        x = torch.randn(512, 1024)
        (x * 2).relu_()  # parallel work: this thread's team exists
        before = thread_count()
        assert release_openmp_threads() is True
        after = thread_count()
        assert after < before
        assert torch.allclose((x * 2).relu(), torch.relu(x + x))  # the team comes back, results unchanged
        assert thread_count() > after
    finally:
        torch.set_num_threads(threads)
