# The two commands of the README's Quick start: `make demo` and `make test`.
# Both create or update .venv first (scripts/setup_env.sh is idempotent: seconds when up to date).
PY := .venv/bin/python

# The ROS tests that also run on the ROS 2 Jazzy wheels (a venv of their own, .venv-jazzy).
JAZZY_TESTS := test/test_node.py test/test_node_units.py test/test_distro_compat.py test/test_launch_files.py \
	test/test_tf_buffer.py test/test_ros_roundtrip.py test/test_bag_replay.py test/test_parameters.py

.PHONY: env demo test test-jazzy bench clean

env:
	./scripts/setup_env.sh

demo: env
	$(PY) -m densefusion_ros.apps.demo

test: env
	$(PY) -m ruff check .
	$(PY) -m pytest

test-jazzy:
	ROS_WHEELS=jazzy ./scripts/setup_env.sh
	.venv-jazzy/bin/python -m pytest $(JAZZY_TESTS)

bench: env
	$(PY) -m tools.bench_pipeline

clean:
	rm -rf build install log out
