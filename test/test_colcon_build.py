"""The repository builds with colcon (the node's ament_python package and its interface package), and its
executables run."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
COLCON = shutil.which("colcon", path=str(VENV_BIN)) or shutil.which("colcon")


@pytest.mark.skipif(COLCON is None, reason="colcon is not installed")
def test_colcon_build_and_run(tmp_path, ros_env):
    src = tmp_path / "ws" / "src" / "densefusion_ros"
    shutil.copytree(
        REPO, src, ignore=shutil.ignore_patterns(".venv", "build", "install", "log", ".data", ".git", "out", "*.egg-info", "__pycache__")
    )
    env = dict(ros_env)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("AMENT_PREFIX_PATH", str(Path(sys.prefix)))
    # docs/deployment.md's workspace recipe: the repository root is the node's package, and its service
    # definitions are a second package below it, which colcon finds when given both paths.
    build = subprocess.run(
        [COLCON, "build", "--base-paths", "src/densefusion_ros", "src/densefusion_ros/interfaces/densefusion_ros_interfaces"],
        cwd=tmp_path / "ws", env=env, capture_output=True, text=True, timeout=300,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    assert "Summary: 2 packages finished" in build.stdout, build.stdout
    generated = tmp_path / "ws" / "install" / "densefusion_ros_interfaces"
    assert list(generated.glob("lib/python3*/site-packages/densefusion_ros_interfaces/srv/_get_poses.py")), build.stdout
    install = tmp_path / "ws" / "install" / "densefusion_ros"
    share = install / "share" / "densefusion_ros"
    assert (share / "package.xml").is_file()
    assert (install / "share" / "ament_index" / "resource_index" / "packages" / "densefusion_ros").is_file()
    assert (share / "config" / "fastdds_localhost.xml").is_file()
    libexec = install / "lib" / "densefusion_ros"
    assert (libexec / "densefusion_node").is_file(), sorted(p.name for p in libexec.iterdir())
    # Run the installed executable the way `ros2 run` does, with the workspace's Python path.
    site = next(install.glob("lib/python3*/site-packages"))
    env["PYTHONPATH"] = f"{site}{os.pathsep}{env.get('PYTHONPATH', '')}"
    run = subprocess.run(
        [sys.executable, str(libexec / "densefusion-ros"), "--help"], env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "synth" in run.stdout and "train" in run.stdout
