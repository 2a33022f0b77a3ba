"""A 30 s soak at 640x480, 30 Hz (tools.bench_soak): bounded latency, no memory growth, only 'busy' drops."""

import json

from conftest import spawn


def test_soak_latency_bounded_and_memory_flat(ros_env, tmp_path):
    proc = spawn(["-m", "tools.bench_soak", "--seconds", "30", "--warmup", "10", "--window", "5",
                  "--rate", "30", "--size", "640x480", "--json", str(tmp_path / "soak.json")], ros_env)
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, out
    r = json.loads((tmp_path / "soak.json").read_text())
    assert r["node alive"] and r["log Traceback"] == 0 and r["log unexpected"] == 0, out
    assert r["processed Hz (after warm-up)"] > 0.5
    # latest frame wins: a frame waits at most for the frame in progress, so latency stays within
    # a few processing periods however far the input rate exceeds the processing rate
    lat, proc_ms = r["latency ms (stamp -> pose received)"], r["processing ms (node)"]
    assert lat["p95"] <= 2.5 * proc_ms["p95"], r
    assert set(r["dropped (total)"]) <= {"busy (latest frame wins)"}, r["dropped (total)"]
    assert abs(r["rss MiB"]["growth %"]) < 5.0, r["rss MiB"]
