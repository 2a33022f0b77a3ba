"""Prints, as JSON, the topics that one node publishes and subscribes to, once it is in the graph,
subscribes to something besides TF (its inputs: the node is active) and has every TOPIC named.

usage: graph_probe.py NODE_NAME [NAMESPACE] [TIMEOUT] [TOPIC ...]
Prints {"publishers": {topic: [types]}, "subscribers": {topic: [types]}, "services": [names]} as soon as every
TOPIC is among the node's publishers or subscribers (endpoints are discovered one by one), or as the graph is at
TIMEOUT seconds (default 60) when some never shows; {"error": ...} when the node did not appear at all.
"""

import os

# Started by the tests with the `ros_env` fixture: loopback-only discovery and a domain of its own.
assert os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE") == "LOCALHOST", "run through the ros_env fixture"

import json
import sys

import rclpy

from waiting import spin_until

TF_TOPICS = ("/tf", "/tf_static")


def main() -> int:
    name = sys.argv[1]
    namespace = sys.argv[2] if len(sys.argv) > 2 else "/"
    timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 60.0
    expected = set(sys.argv[4:])
    rclpy.init()
    probe = rclpy.create_node("graph_probe")
    graph = {}

    def complete() -> bool:
        if (name, namespace) not in probe.get_node_names_and_namespaces():
            return False
        pubs = dict(probe.get_publisher_names_and_types_by_node(name, namespace))
        subs = dict(probe.get_subscriber_names_and_types_by_node(name, namespace))
        services = [s for s, _ in probe.get_service_names_and_types_by_node(name, namespace)]
        graph.update(publishers=pubs, subscribers=subs, services=services)
        # in the graph while still loading, its inputs come last (TF is listened to from the start)
        return bool(set(subs) - set(TF_TOPICS)) and expected <= set(pubs) | set(subs)

    try:
        spin_until(probe, complete, timeout, interval=0.2)
        if not graph:
            print(json.dumps({"error": f"node {namespace.rstrip('/')}/{name} did not appear in {timeout:g} s"}))
            return 1
        print(json.dumps(graph))
        return 0
    finally:
        probe.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
