"""tools/bench_configs.py: variants parse into the pipeline and ICP settings they name."""

from __future__ import annotations

import pytest

from tools import bench_configs


@pytest.fixture(scope="module")
def bench():
    return bench_configs


def test_variants_set_pipeline_and_icp_fields(bench):
    cfg = bench.parse_variant("icp=verify,verify_threads=1,instances=largest,num_points=100,fast_head=false")
    assert (cfg.icp, cfg.instances, cfg.num_points, cfg.fast_head, cfg.seed) == ("verify", "largest", 100, False, 0)
    assert cfg.icp_options.verify_threads == 1 and cfg.icp_options.verify_coverage_weight == 16.0
    assert bench.parse_variant("").instances == "best"  # the defaults


def test_unknown_setting_is_refused(bench):
    with pytest.raises(SystemExit, match="unknown setting 'nope'"):
        bench.parse_variant("nope=1")


def test_tracker_variants_split_tracker_settings_from_the_pipeline_ones():
    from tools import bench_tracker

    config, options = bench_tracker.parse_tracker_variant("climb_violation=1,recheck_turns=false,icp=verify,verify_climb=2", seed=3)
    assert options == {"climb_violation": 1.0, "recheck_turns": False}
    assert (config.icp, config.icp_options.verify_climb, config.seed) == ("verify", 2, 3)
    assert bench_tracker.parse_tracker_variant("") == (bench_configs.parse_variant(""), {})


def test_stage_shares_are_pseudo_settings_of_the_realtime_clock():
    from tools import bench_tracker

    variant = "acquisition_share=0.5,climb_violation=1,segmentation_share=0"
    assert bench_tracker.stage_shares(variant) == {"acquisition_share": 0.5, "segmentation_share": 0.0}
    assert bench_tracker.parse_tracker_variant(variant)[1] == {"climb_violation": 1.0}
    assert bench_tracker.stage_shares("") == {}
    for bad in ("acquisition_share=1.5", "acquisition_share"):
        with pytest.raises(SystemExit, match="needs a share from 0 to 1"):
            bench_tracker.stage_shares(bad)
