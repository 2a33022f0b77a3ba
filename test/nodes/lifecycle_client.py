"""Walks a lifecycle node through transitions via its ~/change_state and ~/get_state services.

usage: lifecycle_client.py NODE TOPIC TRANSITION [TRANSITION ...]   (configure, activate, deactivate, cleanup, shutdown)
Prints one JSON line per step: {"transition", "success", "state", "subscribers"} where "subscribers" counts the
subscriptions to TOPIC in the graph after the step, once the graph shows what the state implies (one while
active, none otherwise; (un)subscriptions are discovered a moment after the transition) or after 30 s.
"""

import os

# Started by the tests with the `ros_env` fixture: loopback-only discovery and a domain of its own.
assert os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE") == "LOCALHOST", "run through the ros_env fixture"

import json
import sys

import rclpy
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState

from waiting import spin_until

IDS = {"configure": Transition.TRANSITION_CONFIGURE, "activate": Transition.TRANSITION_ACTIVATE,
       "deactivate": Transition.TRANSITION_DEACTIVATE, "cleanup": Transition.TRANSITION_CLEANUP,
       "shutdown": Transition.TRANSITION_UNCONFIGURED_SHUTDOWN}


def call(node, client, request):
    future = client.call_async(request)
    rclpy.spin_until_future_complete(node, future, timeout_sec=60.0)
    return future.result()


def main() -> int:
    target, topic, steps = sys.argv[1], sys.argv[2], sys.argv[3:]
    rclpy.init()
    node = rclpy.create_node("lifecycle_client")
    change = node.create_client(ChangeState, f"{target}/change_state")
    get = node.create_client(GetState, f"{target}/get_state")
    if not (change.wait_for_service(timeout_sec=60.0) and get.wait_for_service(timeout_sec=60.0)):
        print(json.dumps({"error": "lifecycle services not available"}), flush=True)
        return 1
    for step in steps:
        result = call(node, change, ChangeState.Request(transition=Transition(id=IDS[step])))
        state = call(node, get, GetState.Request()).current_state.label
        spin_until(node, lambda: node.count_subscribers(topic) == (1 if state == "active" else 0), 30.0)
        print(json.dumps({"transition": step, "success": bool(result.success), "state": state,
                          "subscribers": node.count_subscribers(topic)}), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
