"""Start-up faults: one clear error naming the file and the expected layout, exit code 2, no traceback."""

import time

import pytest

from tools import synthetic

from conftest import spawn


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return synthetic.make_random_models(tmp_path_factory.mktemp("models"))


def test_startup_errors_exit_2_with_one_clear_line(models, ros_env, tmp_path):
    garbage = tmp_path / "notes.pth"
    garbage.write_text("not a checkpoint")
    cases = {  # name: (parameter overrides, substrings of the error)
        "missing": ({"estimator_weights": tmp_path / "nope" / "pose_model.pth"},
                    [f"estimator_weights: {tmp_path / 'nope' / 'pose_model.pth'} does not exist", "expected a DenseFusion estimator (PoseNet)"]),
        "refiner as estimator": ({"estimator_weights": models["refiner"]},
                                 [f"estimator_weights: {models['refiner']}: does not fit a DenseFusion estimator",
                                  "looks like a densefusion_ros refiner checkpoint", "Expected a DenseFusion estimator (PoseNet)"]),
        "not a checkpoint": ({"refiner_weights": garbage}, [f"refiner_weights: {garbage}: cannot be read", "Expected a DenseFusion refiner"]),
        "cuda strict": ({"device": "cuda:99", "device_strict": "true"},
                        ["device 'cuda:99' requested with device_strict, but this machine has"]),
        "icp mode": ({"icp": "sometimes"}, ["icp: 'sometimes' is not none, after, verify or only"]),
        "instances rule": ({"instances": "all"}, ["instances: 'all' is not best, largest, class or split"]),
        "executor": ({"executor": "fast"}, ["executor: 'fast' is not events or multi_threaded"]),
        "mode": ({"mode": "follow"}, ["mode: 'follow' is not track or detect"]),
        "parameter type": ({"icp": "off"}, ["parameter icp: Trying to set parameter 'icp' to 'False'"]),  # YAML: off = false
    }
    procs = {}
    for name, (overrides, _) in cases.items():
        files = dict(models)
        params = []
        for param, value in overrides.items():
            if param.endswith("_weights"):
                files[param.split("_")[0]] = value
            else:
                params.append(f"{param}:={value}")
        procs[name] = (spawn(synthetic.node_command(files, *params), ros_env), time.monotonic())
    for name, (proc, t0) in procs.items():
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 2, (name, out)
        assert "Traceback" not in out, (name, out)
        fatal = [line for line in out.splitlines() if "cannot start:" in line]
        assert len(fatal) == 1 and "[FATAL]" in fatal[0], (name, out)
        for part in cases[name][1]:
            assert part in fatal[0], (name, part, fatal[0])
        assert "ready:" not in out
