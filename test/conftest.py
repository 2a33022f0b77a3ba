"""Shared fixtures. Every ROS process in the tests gets its environment from ``ros_env``.

Every test runs with one intra-op torch thread (``_one_torch_thread``): CI machines are small and
shared, and contended threads run the tests' small ops slower than one thread does. Random-weight
networks come from ``tools/random_networks.py``, other shared helpers from ``helpers.py``, waiting on
a condition with a deadline (instead of a fixed sleep) from ``waiting.py``.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from densefusion_ros.ros.env import local_ros_env

REPO = Path(__file__).resolve().parent.parent
_domains = itertools.count()
# Modules whose tests take tens of seconds or more: training, rendering, the demo, soak, fuzz, builds, evaluation.
SLOW_MODULES = {
    "test_demo", "test_node_soak", "test_fuzz_node", "test_train_ddp", "test_train_smoke", "test_colcon_build", "test_synth",
    "test_eval_evaluate", "test_eval_sequence",
}


def pytest_collection_modifyitems(config, items):
    """Markers from what each test uses (pytest.ini): ``ros`` when it needs a ROS environment or rclpy
    context (a fixture, or a module that builds its own), ``gpu`` when it is skipped without CUDA,
    ``slow`` for :data:`SLOW_MODULES`, ``unit`` otherwise."""
    for item in items:
        gpu = any("CUDA" in str(m.kwargs.get("reason", "")) for m in item.iter_markers("skipif"))
        ros = bool({"ros_env", "rclpy_context"} & set(item.fixturenames)) or hasattr(item.module, "local_ros_env")  # own env
        slow = item.module is not None and item.module.__name__.rpartition(".")[2] in SLOW_MODULES
        for name, on in (("gpu", gpu), ("ros", ros), ("slow", slow)):
            if on:
                item.add_marker(name)
        if not (gpu or ros or slow):
            item.add_marker("unit")


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """One intra-op torch thread, from before the first fixture that builds a network."""
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _one_torch_thread_again():
    """Back to one thread after each test (the trainer and the node set their own count)."""
    yield
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def toy_dataset(tmp_path_factory) -> Path:
    """A small toy BOP dataset (``train``: 6 frames, ``test``: 3 frames, objects lblock and can), read-only."""
    from densefusion_ros.train.toy import make_toy_dataset

    return make_toy_dataset(tmp_path_factory.mktemp("toy"), splits={"train": 6, "test": 3}, samples_per_object=6000)


@pytest.fixture
def ros_env(tmp_path_factory) -> dict[str, str]:
    """Loopback-only ROS 2 environment with a domain id of its own and a temporary log dir."""
    domain = 1 + (os.getpid() * 13 + next(_domains) * 37) % 200
    return local_ros_env(domain_id=domain, log_dir=tmp_path_factory.mktemp("ros_log"))


@pytest.fixture(scope="module")
def rclpy_context(tmp_path_factory):
    """An rclpy context in this process with the tests' ROS environment (as ``ros_env``), for
    in-process node tests; shut down after the module."""
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    domain = 1 + (os.getpid() * 13 + next(_domains) * 37) % 200
    with pytest.MonkeyPatch.context() as mp:
        for k, v in local_ros_env(domain_id=domain, log_dir=tmp_path_factory.mktemp("ros_log")).items():
            mp.setenv(k, v)
        context = rclpy.Context()
        rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
        try:
            yield context
        finally:
            rclpy.try_shutdown(context=context)


def spawn(args: list[str], env: dict[str, str], **kwargs) -> subprocess.Popen:
    """Start ``python args...`` as a separate process with ``env`` (plus the repository root on the path, for
    tools/, and test/, for the processes in test/nodes to import ``waiting``); output is captured as text."""
    path = (str(REPO), str(REPO / "test"), env.get("PYTHONPATH", ""))
    env = {**env, "PYTHONPATH": os.pathsep.join(p for p in path if p)}
    return subprocess.Popen(
        [sys.executable, *args], env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs
    )
