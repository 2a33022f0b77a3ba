"""The node's one parameter spec (densefusion_ros/ros/parameters.py): the files generated from it,
its validation, its descriptors and its mapping to the pipeline's configuration."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from densefusion_ros.icp import IcpOptions, group_rotations
from densefusion_ros.pipeline import PipelineConfig
from densefusion_ros.resources import share_path
from densefusion_ros.ros import parameters
from densefusion_ros.ros.launch_support import FILE_PARAMETERS
from densefusion_ros.ros.parameters import PARAMETERS, SPECS, apply, descriptor, pipeline_config, why_invalid
from tools import render_parameters


def test_yaml_file_is_generated_from_the_spec():
    """config/densefusion.yaml is the spec's rendering (run `python -m tools.render_parameters` after editing
    the spec), and it reads back as every parameter at its default, with the default's type."""
    text = share_path("config", "densefusion.yaml").read_text()
    assert text == render_parameters.yaml_text()
    values = yaml.safe_load(text)["/**"]["ros__parameters"]
    assert list(values) == [spec.name for spec in PARAMETERS]
    for spec in PARAMETERS:
        assert values[spec.name] == spec.default and type(values[spec.name]) is type(spec.default), spec.name


def test_readme_table_is_generated_from_the_spec():
    readme = render_parameters.README_PATH.read_text()
    assert readme == render_parameters.readme_text(readme), "run python -m tools.render_parameters"
    table = readme.partition(render_parameters.BEGIN)[2].partition(render_parameters.END)[0]
    assert all(f"| `{spec.name}` |" in table for spec in PARAMETERS)


def test_defaults_are_valid_and_choices_and_ranges_are_checked():
    for spec in PARAMETERS:
        assert why_invalid(spec.name, spec.default) is None, spec.name
        assert not (spec.choices and spec.range), spec.name
        assert isinstance(spec.default, (bool, int, float, str)), spec.name
    assert why_invalid("mode", "follow") == "mode: 'follow' is not track or detect"
    assert why_invalid("icp", "off") == "icp: 'off' is not none, after, verify or only"
    assert why_invalid("qos", "fast") == "qos: 'fast' is not sensor_data or reliable"
    assert why_invalid("score_threshold", 1.5) == "score_threshold: 1.5 is outside [0.0, 1.0]"
    assert why_invalid("refine_iterations", -1) is not None and why_invalid("refine_iterations", 20) is None
    assert why_invalid("not_a_parameter", 3) is None


def test_descriptors_carry_ranges_choices_and_read_only():
    ints = descriptor(SPECS["refine_iterations"])
    assert (ints.integer_range[0].from_value, ints.integer_range[0].to_value) == (0, 20) and not ints.read_only
    assert not ints.floating_point_range
    unbounded = descriptor(SPECS["min_points"])
    assert unbounded.integer_range[0].to_value == 2**63 - 1
    floats = descriptor(SPECS["score_threshold"])
    assert (floats.floating_point_range[0].from_value, floats.floating_point_range[0].to_value) == (0.0, 1.0)
    choices = descriptor(SPECS["icp"])
    assert choices.read_only and choices.additional_constraints == "one of: none, after, verify, only"
    assert descriptor(SPECS["mode"]).description == SPECS["mode"].description


def test_defaults_make_the_cores_default_configuration():
    """The node's defaults are the shipped configuration: the same as PipelineConfig()'s and IcpOptions()'s."""
    made, core = pipeline_config({}, device="cpu"), PipelineConfig(device="cpu")
    for spec in PARAMETERS:
        if spec.field is not None and not spec.field.startswith("icp_options."):
            assert getattr(made, spec.field) == getattr(core, spec.field), spec.name
    assert made.icp_options.verify_centroid_starts == core.icp_options.verify_centroid_starts
    hypotheses = [len(group_rotations(o.rotation_group, o.init_rotations)) for o in (made.icp_options, IcpOptions())]
    assert hypotheses[0] == hypotheses[1]


def test_every_field_exists_and_values_map_to_it():
    fields = {f.name for f in dataclasses.fields(PipelineConfig)}
    icp_fields = {f.name for f in dataclasses.fields(IcpOptions)}
    for spec in PARAMETERS:
        if spec.field is not None:
            owner, _, name = spec.field.rpartition(".")
            assert name in (icp_fields if owner == "icp_options" else fields), spec.name
    config = pipeline_config({"num_points": 0, "seed": -1, "icp": "none", "verify_hypotheses": 12, "min_points": 7}, device="cpu")
    assert (config.num_points, config.seed, config.icp, config.icp_options.init_rotations, config.min_points) == (None, None, "none", 12, 7)
    config = pipeline_config(lambda name: {"num_points": 500, "seed": 3}.get(name, SPECS[name].default), device="cpu")
    assert (config.num_points, config.seed) == (500, 3)


@pytest.mark.parametrize(("name", "value", "read"), [
    ("score_threshold", 0.4, lambda c: c.score_threshold),
    ("refine_iterations", 0, lambda c: c.refine_iterations),
    ("verify_hypotheses", 12, lambda c: c.icp_options.init_rotations),
    ("verify_centroid_starts", False, lambda c: c.icp_options.verify_centroid_starts),
    ("min_in_view", 0.4, lambda c: c.icp_options.verify_min_in_view),
])
def test_live_changes_apply_to_the_pipeline_config(name, value, read):
    config = pipeline_config({}, device="cpu")
    assert not SPECS[name].read_only
    assert apply(config, name, value) and read(config) == value


def test_parameters_without_a_field_are_not_applied():
    config = pipeline_config({}, device="cpu")
    before = dataclasses.asdict(config)
    assert not apply(config, "expected_input_hz", 15.0) and not apply(config, "not_a_parameter", 1)
    assert dataclasses.asdict(config) == before


def test_launch_arguments_are_the_file_parameters():
    assert FILE_PARAMETERS == ("estimator_weights", "refiner_weights", "segmenter_weights", "catalog")
    assert all(SPECS[name].default == "" and SPECS[name].read_only for name in FILE_PARAMETERS)
    assert parameters.__all__ and set(parameters.__all__) <= set(dir(parameters))


def test_launch_files_read_the_spec_without_loading_torch():
    """The launch process lives as long as the nodes it starts: reading the spec must not load torch into it."""
    import subprocess
    import sys

    code = "import sys, densefusion_ros.ros.launch_support; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
