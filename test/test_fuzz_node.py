"""Hypothesis fuzzing of the running node's colour, depth and camera_info topics (tools.fuzz_node).

CI size: 200 generated sets per topic. DENSEFUSION_FUZZ_COUNT=5000 runs the long version
(or: python -m tools.fuzz_node --count 5000).
"""

import json
import os

from conftest import spawn

COUNT = int(os.environ.get("DENSEFUSION_FUZZ_COUNT", "200"))


def test_fuzzed_inputs_never_crash_or_leak_into_poses(ros_env, tmp_path):
    proc = spawn(["-m", "tools.fuzz_node", "--count", str(COUNT), "--json", str(tmp_path / "report.json"),
                  "--log", str(tmp_path / "node.log"), "--signal", "INT"], ros_env)
    out, _ = proc.communicate(timeout=120 + COUNT * 0.3)
    report = json.loads((tmp_path / "report.json").read_text())
    log = (tmp_path / "node.log").read_text()
    assert report["checks"]["node alive until the end"], log
    assert report["log lines"] == {"Traceback": 0, "unexpected": 0, "total": report["log lines"]["total"]}, log
    assert report["poses"]["from invalid sets"] == 0 and report["poses"]["invalid"] == 0 and report["poses"]["unknown stamps"] == 0
    assert report["sets published"] == 3 * COUNT and report["invalid sets"] >= COUNT // 2
    for topic in report["per topic"].values():
        assert topic["valid"] > 0 and topic["invalid"] and topic["dropped (reasons naming it)"] > 0
    assert report["node"]["exit_code"] == 0 and report["node"]["shutdown_s"] < 2.0, "SIGINT: clean shutdown within 2 s"
    failed = [name for name, ok in report["checks"].items() if not ok]
    assert not failed, (failed, out)
    assert proc.returncode == 0
