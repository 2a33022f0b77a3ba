"""The launch files and the rviz config agree with the package, checked without ``ros2 launch``.

``launch`` and ``launch_ros`` are not on PyPI, so the launch files cannot be executed here. Instead
their syntax tree is read: every executable, installed file, parameter, launch argument and
command-line option they name must exist; and the node of ``densefusion.launch.py`` is started the
way ``ros2 launch`` starts it (node name, parameter file, parameter overrides, remappings, with a
non-default camera namespace) and the ROS graph is checked against the remapped inputs and against
every topic ``config/densefusion.rviz`` displays.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from densefusion_ros.ros.launch_support import FILE_PARAMETERS, rviz_config

from conftest import REPO, spawn

LAUNCH_FILES = sorted((REPO / "launch").glob("*.launch.py"))
PACKAGE = "densefusion_ros"
RVIZ_TYPES = {  # rviz display class -> the message type it subscribes to
    "rviz_default_plugins/Image": "sensor_msgs/msg/Image",
    "rviz_default_plugins/PoseArray": "geometry_msgs/msg/PoseArray",
    "rviz_default_plugins/MarkerArray": "visualization_msgs/msg/MarkerArray",
    "vision_msgs_rviz_plugins/Detection3DArray": "vision_msgs/msg/Detection3DArray",
}


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", getattr(n.func, "attr", None)) == name]


def _kw(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _eval(node: ast.expr, args: dict[str, str]) -> object:
    """The value of a launch expression: strings, lists (concatenated substitutions), dicts,
    ``LaunchConfiguration(name)`` and ``value(name)``, the file arguments' dict comprehension,
    ``os.path.join(share, ...)`` (``share`` = this repository)."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name) and node.id == "share":
        return str(REPO)
    if isinstance(node, ast.List):
        return "".join(str(_eval(e, args)) for e in node.elts)
    if isinstance(node, ast.Dict):
        return {_eval(k, args): _eval(v, args) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.Tuple):
        return tuple(_eval(e, args) for e in node.elts)
    if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("LaunchConfiguration", "value"):
        return args[_eval(node.args[0], args)]  # value(name): a LaunchConfiguration performed in an OpaqueFunction
    if isinstance(node, ast.DictComp):  # {name: value(name) for name in FILE_PARAMETERS if value(name)}
        code = compile(ast.Expression(node), "<launch>", "eval")
        return eval(code, {"value": lambda name: args[name], "FILE_PARAMETERS": FILE_PARAMETERS})  # noqa: S307 - our own file
    if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "join":
        return str(Path(*[str(_eval(a, args)) for a in node.args]))
    raise AssertionError(f"unsupported launch expression: {ast.unparse(node)}")


def _declared(tree: ast.AST) -> dict[str, str | None]:
    """``DeclareLaunchArgument`` names and default values."""
    out = {}
    for call in _calls(tree, "DeclareLaunchArgument"):
        default = _kw(call, "default_value")
        out[_eval(call.args[0], {})] = None if default is None else _eval(default, {})
    return out


def _console_scripts() -> dict[str, str]:
    text = (REPO / "setup.py").read_text()
    return dict(re.findall(r'"([\w-]+) = ([\w.]+):main"', text))


def _node_yaml() -> dict:
    return yaml.safe_load((REPO / "config" / "densefusion.yaml").read_text())


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_names_only_what_exists(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)
    declared = _declared(tree)
    scripts = _console_scripts()
    setup_text = (REPO / "setup.py").read_text()
    (yaml_node, yaml_body), = _node_yaml().items()
    # every file joined under the package's share directory exists and is installed there
    for call in _calls(tree, "join"):
        if isinstance(call.args[0], ast.Name) and call.args[0].id == "share":
            rel = Path(*[_eval(a, {}) for a in call.args[1:]])
            assert (REPO / rel).is_file(), rel
            assert f'"share/{{PACKAGE}}/{rel.parent}"' in setup_text.replace("f\"", "\""), f"{rel} is not installed"
    for call in _calls(tree, "Node"):
        if _eval(_kw(call, "package"), {}) != PACKAGE:
            continue
        executable = _eval(_kw(call, "executable"), {})
        assert executable in scripts, f"{executable} is not a console script of setup.py"
        module = scripts[executable]
        if module == "densefusion_ros.ros.node":
            assert yaml_node == "/**", "the YAML must apply under any node name and namespace"
            for p in _kw(call, "parameters").elts:
                if isinstance(p, (ast.Dict, ast.DictComp)):
                    given = set(_eval(p, {k: v or "x" for k, v in declared.items()}))
                    unknown = given - set(yaml_body["ros__parameters"]) - {"use_sim_time"}  # rclpy's own
                    assert not unknown, f"undeclared parameters {unknown}"
        arguments = _kw(call, "arguments")
        items = [e.value if isinstance(e, ast.Constant) else None for e in (arguments.elts if arguments else [])]
        items = items[: items.index("--ros-args")] if "--ros-args" in items else items  # ROS's own options follow
        options = [e for e in items if isinstance(e, str) and e.startswith("--")]
        if options:
            helptext = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=60).stdout
            assert all(o in helptext for o in options), (options, helptext)
    for call in _calls(tree, "IncludeLaunchDescription"):
        source_expr = _calls(call, "PythonLaunchDescriptionSource")[0].args[0]
        if "share" not in {getattr(a, "id", None) for a in getattr(source_expr, "args", [])}:
            continue  # another package's launch file (realsense2_camera's rs_launch.py)
        source = _eval(source_expr, {})
        included = _declared(ast.parse(Path(source).read_text()))
        given = _kw(call, "launch_arguments")
        keys = _eval(given.func.value, {k: v or "x" for k, v in declared.items()}) if given is not None else {}
        assert set(keys) <= set(included), f"{source} declares no {set(keys) - set(included)}"
        assert all(v is not None for k, v in included.items() if k not in keys), "an included argument has no value"


def test_realsense_launch_turns_on_aligned_depth():
    tree = ast.parse((REPO / "launch" / "realsense.launch.py").read_text())
    include = next(c for c in _calls(tree, "IncludeLaunchDescription") if "rs_launch.py" in ast.unparse(c))
    args = _eval(_kw(include, "launch_arguments").func.value, dict(_declared(tree)))
    assert args["align_depth.enable"] == "true"
    assert {"camera_name", "camera_namespace", "serial_no"} <= set(args), "the camera's own arguments pass through"


def _launch_node_argv(camera_namespace: str, **launch_args: str) -> tuple[str, list[str]]:
    """The command line ``ros2 launch densefusion_ros densefusion.launch.py`` gives the node."""
    tree = ast.parse((REPO / "launch" / "densefusion.launch.py").read_text())
    args = dict(_declared(tree))
    args.update(camera_namespace=camera_namespace, device="cpu", **launch_args)
    (node,) = _calls(tree, "Node")
    name = _eval(_kw(node, "name"), args)
    argv = ["-m", _console_scripts()[_eval(_kw(node, "executable"), args)], "--ros-args", "-r", f"__node:={name}"]
    namespace = _eval(_kw(node, "namespace"), args)
    if namespace:
        argv += ["-r", f"__ns:=/{namespace.strip('/')}"]
    arguments = [_eval(a, args) for a in _kw(node, "arguments").elts]
    argv += arguments[arguments.index("--ros-args") + 1 :]
    for p in _kw(node, "parameters").elts:
        value = _eval(p, args)
        if isinstance(value, dict):
            argv += [a for k, v in value.items() for a in ("-p", f"{k}:={v}")]
        else:
            argv += ["--params-file", value]
    for src, dst in (_eval(r, args) for r in _kw(node, "remappings").elts):
        argv += ["-r", f"{src}:={dst}"]
    return name, argv


def test_launched_node_serves_the_rviz_config(ros_env):
    """The node as densefusion.launch.py starts it (bundled weights, camera_namespace:=/cam2):
    remapped inputs, and every topic of config/densefusion.rviz with the type its display expects."""
    name, argv = _launch_node_argv("/cam2")
    rviz = yaml.safe_load((REPO / "config" / "densefusion.rviz").read_text())
    displays = [d for d in rviz["Visualization Manager"]["Displays"] if "Topic" in d]
    assert len(displays) >= 5
    color_default = _node_yaml()["/**"]["ros__parameters"]["color_topic"]
    shown = [d for d in displays if d["Topic"]["Value"] != color_default]  # not the camera's own image (remapped on the node's side only)
    inputs = ["/cam2/color/image_raw", "/cam2/aligned_depth_to_color/image_raw", "/cam2/color/camera_info"]
    expected = [*inputs, *(d["Topic"]["Value"] for d in shown), "/tf", "/densefusion/debug/pipeline_time_ms"]
    node = spawn(argv + ["-p", "torch_threads:=1"], ros_env)
    try:
        lines = [node.stdout.readline()]
        while "ready:" not in lines[-1] and lines[-1]:
            lines.append(node.stdout.readline())  # EOF ends it: the probe then reports the node missing
        probe = spawn(["test/nodes/graph_probe.py", name, "/", "120", *expected], ros_env)
        graph = json.loads(probe.communicate(timeout=180)[0].strip().splitlines()[-1])
    finally:
        node.terminate()
        log = "".join(lines) + node.communicate(timeout=30)[0]
    assert "error" not in graph, graph["error"] + "\n" + log
    subs, pubs = graph["subscribers"], graph["publishers"]
    assert subs.get(inputs[0]) == ["sensor_msgs/msg/Image"], subs
    assert subs.get(inputs[1]) == ["sensor_msgs/msg/Image"], subs
    assert subs.get(inputs[2]) == ["sensor_msgs/msg/CameraInfo"], subs
    for d in shown:
        topic = d["Topic"]["Value"]
        assert pubs.get(topic) == [RVIZ_TYPES[d["Class"]]], (topic, pubs)
    assert "/tf" in pubs
    assert pubs.get("/densefusion/debug/pipeline_time_ms") == ["std_msgs/msg/Float64"], pubs


def test_launched_in_a_namespace_the_node_applies_its_yaml(ros_env, tmp_path):
    """``namespace:=robot1`` with a parameter file of the shipped form (keyed ``/**``) whose colour
    topic differs: the node's outputs live under /robot1/densefusion and it subscribes to the
    file's colour topic, so the file's values reached the namespaced node. The ``catalog`` launch
    argument overrides the file's (missing) catalog, and rviz's config, moved to the namespaces,
    shows only topics the node has."""
    params = _node_yaml()
    params["/**"]["ros__parameters"]["color_topic"] = "/robot1/cam/color/image_raw"
    params["/**"]["ros__parameters"]["catalog"] = "/nonexistent/catalog_of_the_file.yaml"  # the launch argument wins
    params_file = tmp_path / "robot1.yaml"
    params_file.write_text(yaml.safe_dump(params))
    catalog = str(REPO / "config" / "objects" / "demo.yaml")
    name, argv = _launch_node_argv("/cam2", namespace="robot1", params_file=str(params_file), log_level="warn", catalog=catalog)
    assert f"catalog:={catalog}" in argv and not any(a.startswith("estimator_weights:=") for a in argv), argv
    # rviz as realsense.launch.py starts it for namespace robot1 and camera robot1/cam: every topic it shows is there
    rviz = yaml.safe_load(rviz_config(REPO / "config" / "densefusion.rviz", "robot1", "robot1", "cam").read_text())
    displays = [d for d in rviz["Visualization Manager"]["Displays"] if "Topic" in d]
    expected = ["/robot1/cam/color/image_raw", "/robot1/densefusion/poses", *(d["Topic"]["Value"] for d in displays)]
    node = spawn(argv + ["-p", "torch_threads:=1"], ros_env)
    try:
        probe = spawn(["test/nodes/graph_probe.py", name, "/robot1", "120", *expected], ros_env)
        graph = json.loads(probe.communicate(timeout=180)[0].strip().splitlines()[-1])
    finally:
        node.terminate()
        log = node.communicate(timeout=30)[0]
    assert "error" not in graph, graph["error"] + "\n" + log
    assert graph["subscribers"].get("/robot1/cam/color/image_raw") == ["sensor_msgs/msg/Image"], graph["subscribers"]
    assert graph["publishers"].get("/robot1/densefusion/poses") == ["geometry_msgs/msg/PoseArray"], graph["publishers"]
    assert "ready:" not in log, "log_level warn hides the info lines"
    assert rviz["Visualization Manager"]["Global Options"]["Fixed Frame"] == "cam_color_optical_frame"
    for d in displays:
        topic, wanted = d["Topic"]["Value"], [RVIZ_TYPES[d["Class"]]]
        assert graph["publishers"].get(topic) == wanted or graph["subscribers"].get(topic) == wanted, (topic, graph)


def test_file_arguments_left_empty_keep_the_parameter_file():
    """The weights and catalog launch arguments override the parameter file only when given."""
    _, argv = _launch_node_argv("/cam2")
    assert not any(a.split(":=")[0] in FILE_PARAMETERS for a in argv), argv
    _, argv = _launch_node_argv("/cam2", refiner_weights="none")
    assert "refiner_weights:=none" in argv and not any(a.startswith("catalog:=") for a in argv), argv


def test_densefusion_launch_remaps_the_nodes_default_topics():
    """The launch file spells the camera topics as literals (ros2 launch files stay plain); they must be the
    node's defaults from ros/topics.py, and camera_namespace's default their namespace."""
    from densefusion_ros.ros.parameters import SPECS
    from densefusion_ros.ros.topics import CAMERA_NAMESPACE

    tree = ast.parse((REPO / "launch" / "densefusion.launch.py").read_text())
    args = dict(_declared(tree))
    assert args["camera_namespace"] == CAMERA_NAMESPACE
    (node,) = _calls(tree, "Node")
    remaps = dict(_eval(r, args) for r in _kw(node, "remappings").elts)
    assert set(remaps) == {SPECS[name].default for name in ("color_topic", "depth_topic", "camera_info_topic")}
    assert all(dst == src for src, dst in remaps.items()), "with the default camera_namespace the remappings are identities"
