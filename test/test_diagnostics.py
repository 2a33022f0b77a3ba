"""diagnostic_updater-style tasks: frequency, timestamps, processing budget, tracks."""

from densefusion_ros.ros.diagnostics import ERROR, OK, TRACK_KEYS, WARN, BudgetStatus, FrequencyStatus, TimestampStatus, tracks_status


def test_frequency_status_levels():
    f = FrequencyStatus(28.0, 32.0, tolerance=0.1, window=5)
    assert f.status(now=100.0)[0] == ERROR
    for k in range(150):
        f.tick(now=95.0 + k / 30.0)
    level, msg, values = f.status(now=100.0)
    assert level == OK, (msg, values)
    slow = FrequencyStatus(28.0, 32.0)
    for k in range(50):
        slow.tick(now=95.0 + k / 10.0)
    assert slow.status(now=100.0)[:2] == (WARN, "frequency too low")


def test_timestamp_status():
    ts = TimestampStatus(max_future=0.5, max_age=1.0)
    assert ts.check(99.9, now=100.0) is None
    assert ts.status()[0] == OK
    assert ts.check(0.0, now=100.0) == "zero"
    assert ts.check(105.0, now=100.0) == "future"
    assert ts.check(90.0, now=100.0) == "stale"
    level, msg, _ = ts.status()
    assert level == ERROR and "zero" in msg and "future" in msg and "stale" in msg
    assert ts.status()[0] == OK  # counts reset per report


def test_a_replay_lag_is_learned_and_a_loop_retakes_it():
    """A recording replayed without /clock lags an hour behind, steadily: its first frames are stale,
    then the lag is adopted (once) and ages are measured from it; a loop's jump back re-takes it at
    once; a stale frame of a live stream (lag not steady) stays stale."""
    ts = TimestampStatus(max_future=0.5, max_age=1.0, replay_frames=5)
    results = [ts.check(10.0 + k / 30, now=3610.0 + k / 30 + 0.01 * (k % 2)) for k in range(8)]
    assert results[:4] == ["stale"] * 4 and results[4:] == [None] * 4
    assert ts.replay_detected and abs(ts.offset - 3600.0) < 0.02
    assert ts.check(10.0 + 20 / 30, now=3610.0 + 20 / 30 + 2.0) == "stale"  # 2 s late beyond the lag: stale again
    ts.restart(10.0, now=3620.0)  # the loop starts again at the first stamp
    assert ts.check(10.0 + 1 / 30, now=3620.0 + 1 / 30) is None and abs(ts.offset - 3610.0) < 1e-6
    live = TimestampStatus(max_future=0.5, max_age=1.0, replay_frames=5)
    assert [live.check(100.0 - 2.0 * k, now=100.0 + k) for k in range(1, 7)] == ["stale"] * 6  # growing lag
    assert [live.check(200.0 + k, now=201.5 + k) for k in range(8)] == ["stale"] * 8  # a steady 1.5 s: a live stall or skew
    assert [live.check(300.0 + k, now=297.0 + k) for k in range(8)] == ["future"] * 8  # clocks out of sync stay refused
    assert live.offset == 0.0 and not live.replay_detected
    live.restart(50.0, now=200.0)  # a live stream that jumps back keeps measuring from now
    assert live.offset == 0.0 and live.check(199.9, now=200.0) is None


def test_a_clock_at_zero_learns_no_lag():
    """use_sim_time before the first /clock message: the clock reads 0 and every frame is "future"; no lag
    is adopted from that."""
    ts = TimestampStatus(max_future=0.5, max_age=1.0, replay_frames=3)
    assert [ts.check(1000.0 + k, now=0.0) for k in range(5)] == ["future"] * 5
    assert ts.offset == 0.0


def test_budget_warn_then_error_after_ten():
    b = BudgetStatus(100.0, error_after=10)
    b.record(50)
    assert b.status()[0] == OK
    for k in range(9):
        b.record(150)
        assert b.status()[0] == WARN
    b.record(150)
    assert b.status()[0] == ERROR
    b.record(10)
    assert b.status()[0] == OK


def test_tracks_status_reports_the_tracker_counts():
    stats = {"tracks": 2, "lost": 1, "acquisitions": 4, "reacquisitions": 1, "reacquisitions_per_minute": 1}
    level, message, values = tracks_status("track", stats)
    assert level == OK and message == "2 followed, 1 lost"
    assert values == {"mode": "track", "tracks": "2", "lost": "1", "acquisitions": "4", "reacquisitions": "1",
                      "reacquisitions_per_minute": "1"}
    level, message, values = tracks_status("detect", stats)
    assert (level, message) == (OK, "detect mode") and values == {"mode": "detect", **dict.fromkeys(TRACK_KEYS, "0")}
    assert tracks_status("track", None)[2]["tracks"] == "0"  # before the first tracked frame
