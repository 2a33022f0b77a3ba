#!/usr/bin/env bash
# Create or update .venv: pinned ML stack, ROS 2 Kilted wheels (unless ROS_DISTRO is set), this
# repo's tf2_msgs/vision_msgs when the environment lacks them, its densefusion_ros_interfaces, and
# the package in editable mode.
# Idempotent: a second run with nothing changed only checks a stamp and exits in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
# ROS_WHEELS=jazzy: the Jazzy wheels instead of Kilted's, in a venv of their own (make test-jazzy).
WHEELS=${ROS_WHEELS:-kilted}
case "$WHEELS" in
  kilted) ROS_REQUIREMENTS=requirements-ros.txt; DEFAULT_VENV=$ROOT/.venv ;;
  jazzy) ROS_REQUIREMENTS=requirements-ros-jazzy.txt; DEFAULT_VENV=$ROOT/.venv-jazzy ;;
  *) echo "[setup] ROS_WHEELS must be kilted or jazzy, not $WHEELS" >&2; exit 2 ;;
esac
VENV=${VENV:-$DEFAULT_VENV}
PY=${PYTHON:-python3}
STAMP=$VENV/.densefusion_ros_setup

say() { printf '[setup] %s\n' "$*"; }

inputs_hash() {
  cat requirements.txt "$ROS_REQUIREMENTS" setup.py package.xml scripts/setup_env.sh \
      $(find interfaces -type f | sort) 2>/dev/null | sha256sum | cut -d' ' -f1
  echo "${ROS_DISTRO:-pypi-$WHEELS}"
}

want=$(inputs_hash | tr '\n' ' ')
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  say "environment up to date ($VENV)"
  exit 0
fi

# System packages that pip cannot provide.
missing=()
ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0' || missing+=(libusb-1.0-0)
command -v cmake >/dev/null || missing+=(cmake)
command -v g++ >/dev/null || missing+=(g++)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing system packages with apt: ${missing[*]} (libusb for Open3D; cmake and g++ to build interfaces)"
  SUDO=; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${missing[@]}"
fi

if [ -n "${ROS_DISTRO:-}" ]; then
  say "ROS_DISTRO=$ROS_DISTRO: using the system's rclpy and message packages"
  [ -x "$VENV/bin/python" ] || $PY -m venv --system-site-packages "$VENV"
  "$VENV/bin/pip" install -q -r requirements.txt
else
  [ -x "$VENV/bin/python" ] || { say "creating $VENV"; $PY -m venv "$VENV"; }
  say "installing pinned requirements (ML stack + ROS 2 $WHEELS wheels)"
  "$VENV/bin/pip" install -q -r requirements.txt -r "$ROS_REQUIREMENTS"
fi

# Interface packages missing from PyPI, and this repo's own: build them, only where absent.
build_interface() {
  local pkg=$1 kind=${2:-msg}
  if "$VENV/bin/python" -c "import ${pkg}.${kind}" 2>/dev/null; then
    say "$pkg: provided by the environment"
    return
  fi
  say "$pkg: building interfaces/$pkg into $VENV"
  local inc numpy_inc
  inc=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  numpy_inc=$("$VENV/bin/python" -c 'import numpy; print(numpy.get_include())')
  # The wheels' CMake exports name the build host's Python paths; point them at this venv.
  local f
  for f in $(grep -rl --include='*Export*.cmake' '/opt/python/cp311-cp311' "$VENV/share" 2>/dev/null || true); do
    sed -i -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#${numpy_inc}#g" \
           -e "s#/opt/python/cp311-cp311/include/python3.11#${inc}#g" "$f"
  done
  local build=$ROOT/build/interfaces-$WHEELS/$pkg
  rm -rf "$build"
  local prefixes=$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}  # a sourced ROS install's packages too
  AMENT_PREFIX_PATH=$prefixes PATH=$VENV/bin:$PATH cmake -S "interfaces/$pkg" -B "$build" -Wno-dev \
    -DCMAKE_PREFIX_PATH="${prefixes//:/;}" -DCMAKE_INSTALL_PREFIX="$VENV" -DPython3_EXECUTABLE="$VENV/bin/python" \
    -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release >"$build.log" 2>&1 || { tail -30 "$build.log"; exit 1; }
  AMENT_PREFIX_PATH=$prefixes PATH=$VENV/bin:$PATH cmake --build "$build" --target install -j "$(nproc)" \
    >>"$build.log" 2>&1 || { tail -30 "$build.log"; exit 1; }
}
mkdir -p "build/interfaces-$WHEELS"
build_interface tf2_msgs
build_interface vision_msgs
build_interface densefusion_ros_interfaces srv

say "installing densefusion_ros (editable)"
"$VENV/bin/pip" install -q --no-deps --no-build-isolation -e .

"$VENV/bin/python" -c "import rclpy, tf2_msgs.msg, vision_msgs.msg, densefusion_ros_interfaces.srv, torch, cv2, open3d" \
  || { say "import check failed"; exit 1; }
echo "$want" >"$STAMP"
say "done: $(du -sh "$VENV" | cut -f1) in $VENV"
