"""The layering of the package: the ROS-free core imports with rclpy and every ROS message package
made unimportable; only the ROS layer (``densefusion_ros/ros``) and the demo apps
(``densefusion_ros/apps``) import ROS; the ROS layer does not import the demo apps; the package
imports no harness.

No ROS process is started here, so the loopback-only `ros_env` fixture is not needed.
"""

import ast
import subprocess
import sys
from pathlib import Path

CHECK = r"""
import importlib, pkgutil, sys
BLOCKED = ("rclpy", "rosidl_runtime_py", "std_msgs", "sensor_msgs", "geometry_msgs", "vision_msgs",
           "tf2_msgs", "visualization_msgs", "diagnostic_msgs", "std_srvs", "builtin_interfaces",
           "message_filters", "tf2_ros", "cv_bridge")
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"ROS module {name} imported by the core")
sys.meta_path.insert(0, Block())
import densefusion_ros
ROS_FREE = ("densefusion_ros.ros.env", "densefusion_ros.ros.topics")  # in the ROS layer, read by ROS-free code
names = [m.name for m in pkgutil.walk_packages(densefusion_ros.__path__, "densefusion_ros.")
         if not m.name.startswith(("densefusion_ros.ros.", "densefusion_ros.apps.")) or m.name in ROS_FREE]
for name in names:
    importlib.import_module(name)
leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
assert not leaked, leaked
print(len(names), "modules")
"""


def test_core_imports_without_ros():
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert int(out.stdout.split()[0]) >= 5


def test_cli_help_lists_commands():
    out = subprocess.run([sys.executable, "-m", "densefusion_ros.cli", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for command in ("infer", "synth", "train", "evaluate"):
        assert command in out.stdout


ROOT = Path(__file__).resolve().parents[1]


def _imports(folder: Path) -> list[tuple[str, str]]:
    """``(file, imported module)`` for every import in the Python files under ``folder``, lazy ones included;
    relative ones resolved, and ``from a import b`` listed as both ``a`` and ``a.b`` (b may be a module)."""
    found = []
    for path in folder.rglob("*.py"):
        package = path.relative_to(ROOT).with_suffix("").parts[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join([*package[: len(package) - node.level + 1], *([base] if base else [])])
                names = [base, *(f"{base}.{a.name}" for a in node.names)]
            else:
                names = []
            found += [(str(path.relative_to(ROOT)), n) for n in names]
    return found


def test_the_package_imports_no_harness():
    """Benchmarks and test harnesses live in tools/, outside the installed package: nothing in it imports them."""
    offenders = [f"{f}: {n}" for f, n in _imports(ROOT / "densefusion_ros") if n.split(".")[0] in ("tools", "hypothesis", "pytest")]
    assert not offenders, offenders


def test_the_ros_layer_imports_no_demo_app():
    """The node and its ROS layer stand without the demo apps (replay, listener, demo, bag I/O): the apps use the layer, not
    the reverse."""
    offenders = [f"{f}: {n}" for f, n in _imports(ROOT / "densefusion_ros" / "ros")
                 if n == "densefusion_ros.apps" or n.startswith("densefusion_ros.apps.")]
    assert not offenders, offenders
