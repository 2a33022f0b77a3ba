"""The distro seam (densefusion_ros.ros.compat): parameter callbacks with and without rclpy's
post-set callback (Humble has none), and the executor when rclpy has no EventsExecutor."""

from __future__ import annotations

import pytest
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter

from densefusion_ros.ros import compat
from densefusion_ros.ros.node import DenseFusionNode
from tools import synthetic


@pytest.fixture(scope="module")
def context(rclpy_context, tmp_path_factory):
    return rclpy_context, tmp_path_factory.mktemp("compat")


class HumbleNode(Node):
    """An rclpy node without ``add_post_set_parameters_callback``, as on Humble."""

    add_post_set_parameters_callback = None


@pytest.mark.parametrize("node_class", [Node, HumbleNode], ids=["post_set", "humble"])
def test_rejected_changes_are_not_applied_and_accepted_ones_are(context, node_class):
    ctx, _ = context
    node = node_class("compat_params", context=ctx)
    try:
        node.declare_parameter("rate", 10)
        applied = []

        def check(params):
            ok = all(p.value > 0 for p in params)
            return SetParametersResult(successful=ok, reason="" if ok else "must be positive")

        compat.add_parameter_callbacks(node, check, lambda params: applied.extend((p.name, p.value) for p in params))
        assert not node.set_parameters([Parameter("rate", value=-1)])[0].successful
        assert applied == [] and node.get_parameter("rate").value == 10
        assert node.set_parameters([Parameter("rate", value=30)])[0].successful
        assert applied == [("rate", 30)] and node.get_parameter("rate").value == 30
    finally:
        node.destroy_node()


def test_the_node_spins_a_multi_threaded_executor_without_the_events_executor(context, monkeypatch):
    ctx, tmp = context
    monkeypatch.setattr(compat, "events_executor", lambda: None)
    models = synthetic.make_random_models(tmp)
    params = {"estimator_weights": str(models["estimator"]), "refiner_weights": str(models["refiner"]),
              "catalog": str(models["catalog"]), "device": "cpu", "executor": "events"}  # fmt: skip
    node = DenseFusionNode(context=ctx, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    try:
        executor = node.create_executor()
        assert isinstance(executor, MultiThreadedExecutor)
        executor.shutdown()
    finally:
        node.shutdown()
        node.destroy_node()
