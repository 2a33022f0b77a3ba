"""Prints, as JSON, the topics that one node publishes and subscribes to, once it is in the graph
and subscribes to something besides TF (its inputs: the node is active).

usage: graph_probe.py NODE_NAME [NAMESPACE] [TIMEOUT]
Prints {"publishers": {topic: [types]}, "subscribers": {topic: [types]}, "services": [names]},
or {"error": ...} when the node did not appear within TIMEOUT seconds (default 60).
"""

import os

# Started by the tests with the `ros_env` fixture: loopback-only discovery and a domain of its own.
assert os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE") == "LOCALHOST", "run through the ros_env fixture"

import json
import sys
import time

import rclpy

TF_TOPICS = ("/tf", "/tf_static")


def main() -> int:
    name = sys.argv[1]
    namespace = sys.argv[2] if len(sys.argv) > 2 else "/"
    timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 60.0
    rclpy.init()
    probe = rclpy.create_node("graph_probe")
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            rclpy.spin_once(probe, timeout_sec=0.2)
            if (name, namespace) not in probe.get_node_names_and_namespaces():
                continue
            inputs = [t for t, _ in probe.get_subscriber_names_and_types_by_node(name, namespace) if t not in TF_TOPICS]
            if not inputs:
                continue  # in the graph, still loading: its inputs come last (TF is listened to from the start)
            time.sleep(1.0)  # let every endpoint of the node be discovered
            rclpy.spin_once(probe, timeout_sec=0.2)
            pubs = probe.get_publisher_names_and_types_by_node(name, namespace)
            subs = probe.get_subscriber_names_and_types_by_node(name, namespace)
            services = probe.get_service_names_and_types_by_node(name, namespace)
            print(json.dumps({"publishers": dict(pubs), "subscribers": dict(subs), "services": [s for s, _ in services]}))
            return 0
        print(json.dumps({"error": f"node {namespace.rstrip('/')}/{name} did not appear in {timeout:g} s"}))
        return 1
    finally:
        probe.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
