# The two commands of the README's Quick start: `make demo` and `make test`.
# Both create or update .venv first (scripts/setup_env.sh is idempotent: seconds when up to date).
PY := .venv/bin/python

.PHONY: env demo test bench clean

env:
	./scripts/setup_env.sh

demo: env
	$(PY) -m densefusion_ros.ros.demo

test: env
	$(PY) -m pytest

bench: env
	$(PY) -m densefusion_ros.bench

clean:
	rm -rf build install log out
