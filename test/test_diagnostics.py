"""diagnostic_updater-style tasks: frequency, timestamps, processing budget, tracks."""

from densefusion_ros.ros.diagnostics import (
    ERROR, OK, TRACK_KEYS, WARN, BudgetStatus, FrequencyStatus, TimestampStatus, tracks_status,
)


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
