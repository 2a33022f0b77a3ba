"""ament_python package: installs with colcon in a ROS 2 workspace and with pip in a venv."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "densefusion_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.rviz") + glob("config/*.xml")),
        (f"share/{PACKAGE}/config/objects", glob("config/objects/*.yaml")),
        (f"share/{PACKAGE}/models", glob("models/*.pth") + glob("models/*.md")),
        (f"share/{PACKAGE}/interfaces/vision_msgs/msg", glob("interfaces/vision_msgs/msg/*.msg")),
        (f"share/{PACKAGE}/data/demo_sequence", glob("data/demo_sequence/*")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="densefusion_ros maintainers",
    maintainer_email="maintainers@densefusion-ros.dev",
    description="Real-time 6D object poses from RGB-D with DenseFusion, for ROS 2.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "densefusion-ros = densefusion_ros.cli:main",
            "densefusion_node = densefusion_ros.ros.node:main",
            "densefusion_replay = densefusion_ros.apps.replay:main",
            "densefusion_listener = densefusion_ros.apps.listener:main",
            "densefusion_demo = densefusion_ros.apps.demo:main",
        ],
    },
)
