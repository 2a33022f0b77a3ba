"""``rosdep install`` can resolve package.xml on Humble, Jazzy and Kilted, and it declares what the code imports.

Checked against test/data/rosdep_snapshot.yaml: excerpts of ros/rosdistro's rosdep key files and
distribution files, kept as test data (nothing is downloaded).
"""

from __future__ import annotations

import ast
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from conftest import REPO

SNAPSHOT = yaml.safe_load((REPO / "test" / "data" / "rosdep_snapshot.yaml").read_text())
# Python import name -> the rosdep key or ROS package that provides it, where the two differ.
PROVIDED_BY = {
    "torch": "python3-torch", "numpy": "python3-numpy", "scipy": "python3-scipy", "cv2": "python3-opencv",
    "open3d": "python3-open3d-pip", "trimesh": "python3-trimesh-pip", "pybullet": "python3-pybullet-pip",
    "pybullet_data": "python3-pybullet-pip", "pybullet_utils": "python3-pybullet-pip", "rosbags": "python3-rosbags-pip",
    "yaml": "python3-yaml", "tqdm": "python3-tqdm", "matplotlib": "python3-matplotlib", "psutil": "python3-psutil",
    "hypothesis": "python3-hypothesis", "pytest": "python3-pytest", "tf2_ros": "tf2_ros_py",
}
IN_REPO = {ET.parse(p).findtext("name") for p in (REPO / "interfaces").glob("*/package.xml") if not (p.parent / "COLCON_IGNORE").exists()}


def _depends(package_xml: Path) -> dict[str, set[str]]:
    """Format 3's dependency kinds: ``depend`` counts as build, exec and export."""
    root = ET.parse(package_xml).getroot()
    names = {tag: {e.text.strip() for e in root.iter(tag)} for tag in
             ("depend", "build_depend", "buildtool_depend", "exec_depend", "build_export_depend", "test_depend")}
    both = names["depend"]
    return {"build": names["build_depend"] | both, "buildtool": names["buildtool_depend"],
            "exec": names["exec_depend"] | both, "export": names["build_export_depend"] | both, "test": names["test_depend"]}


def _resolves(key: str, distro: str) -> str | None:
    """Why ``key`` does not resolve on ``distro``'s platforms, or None when it does."""
    if key in IN_REPO or key in SNAPSHOT["released"][distro]:
        return None
    rules = SNAPSHOT["rosdep_keys"].get(key)
    if rules is None:
        return f"{key}: no such rosdep key or {distro} package"
    dead = [p for p in SNAPSHOT["platforms"][distro] if not rules.get(p)]
    return f"{key}: resolves to nothing on {dead}" if dead else None


def _imports(paths: list[Path]) -> set[str]:
    """Top-level third-party modules imported by ``paths`` (neither the standard library nor this repo's)."""
    local = {p.stem for p in (REPO / "test").rglob("*.py")} | {"densefusion_ros", "tools", "__future__"}
    found = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
            found |= {n.split(".")[0] for n in names}
    return found - set(sys.stdlib_module_names) - local


@pytest.mark.parametrize("distro", sorted(SNAPSHOT["platforms"]))
@pytest.mark.parametrize("package_xml", [REPO / "package.xml", *(REPO / "interfaces").glob("densefusion_ros_interfaces/package.xml")],
                         ids=lambda p: p.parent.name if isinstance(p, Path) else p)
def test_every_dependency_resolves(package_xml, distro):
    unresolved = [why for kind in _depends(package_xml).values() for key in sorted(kind) if (why := _resolves(key, distro))]
    assert not unresolved, unresolved


def test_no_key_that_rosdep_lacks():
    declared = set().union(*_depends(REPO / "package.xml").values())
    assert not declared & set(SNAPSHOT["missing_keys"]), declared & set(SNAPSHOT["missing_keys"])
    assert "tf2_ros" not in declared, "tf2_ros is the C++ package; the Python module comes with tf2_ros_py"


def test_what_the_code_imports_is_declared():
    """The package and launch files' imports are run dependencies; the tests' and tools' are run or test dependencies."""
    deps = _depends(REPO / "package.xml")

    def key(module: str) -> str:
        return PROVIDED_BY.get(module, module)

    runtime = _imports(list((REPO / "densefusion_ros").rglob("*.py")) + list((REPO / "launch").glob("*.py")))
    missing = sorted(m for m in runtime if key(m) not in deps["exec"])
    assert not missing, f"imported at run time but not an exec_depend: {missing}"
    tests = _imports(list((REPO / "test").rglob("*.py")) + list((REPO / "tools").glob("*.py")))
    missing = sorted(m for m in tests if key(m) not in deps["exec"] | deps["test"])
    assert not missing, f"imported by the tests but not declared: {missing}"
