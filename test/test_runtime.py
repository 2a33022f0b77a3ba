"""densefusion_ros.runtime: the one device rule and the one CPU-thread rule."""

import os

import torch

from densefusion_ros.runtime import cpu_threads, resolve_device


def test_auto_is_cuda_only_where_there_is_one():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)  # named devices pass through (checked where they are used)


def test_threads_as_asked_or_the_free_share_of_the_cores():
    assert cpu_threads(3) == 3
    cores = os.cpu_count() or 1
    assert 1 <= cpu_threads(None) <= cores
    assert 1 <= cpu_threads(None, world_size=cores * 4) <= 1  # more ranks than cores: one thread each
