"""Sets parameters of a node through its ~/set_parameters service and prints each result as JSON.

usage: param_client.py NODE NAME:=VALUE [NAME:=VALUE ...]
Values are parsed as YAML (``0.5`` a double, ``3`` an integer, ``true`` a bool); each assignment
is its own request, so one refusal does not hide the others. Prints one line
[{"name", "successful", "reason"}, ...].
"""

import os

# Started by the tests with the `ros_env` fixture: loopback-only discovery and a domain of its own.
assert os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE") == "LOCALHOST", "run through the ros_env fixture"

import json
import sys

import rclpy
import yaml
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter


def main() -> int:
    node_name, assignments = sys.argv[1], sys.argv[2:]
    rclpy.init()
    node = rclpy.create_node("param_client")
    client = node.create_client(SetParameters, f"{node_name}/set_parameters")
    if not client.wait_for_service(timeout_sec=60.0):
        print(json.dumps([{"name": "", "successful": False, "reason": "service not available"}]))
        return 1
    results = []
    for assignment in assignments:
        name, text = assignment.split(":=", 1)
        request = SetParameters.Request(parameters=[Parameter(name, value=yaml.safe_load(text)).to_parameter_msg()])
        future = client.call_async(request)
        rclpy.spin_until_future_complete(node, future, timeout_sec=30.0)
        (result,) = future.result().results
        results.append({"name": name, "successful": bool(result.successful), "reason": result.reason})
    print(json.dumps(results), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
