"""The in-package ApproximateTime synchroniser, driven without middleware (as message_filters tests do)."""

from types import SimpleNamespace

from densefusion_ros.ros.sync import ApproximateTimeSync


def stamped(t: float, tag: str):
    sec = int(t)
    return SimpleNamespace(header=SimpleNamespace(stamp=SimpleNamespace(sec=sec, nanosec=int(round((t - sec) * 1e9)))), tag=tag)


def test_pairs_within_slop_and_in_order():
    out = []
    sync = ApproximateTimeSync(3, lambda *m: out.append(tuple(x.tag for x in m)), queue_size=5, slop=0.02)
    for k in range(5):
        t = 10 + k / 30
        sync.add(0, stamped(t, f"c{k}"))
        sync.add(1, stamped(t + 0.005, f"d{k}"))  # depth a little later, as with RealSense
        sync.add(2, stamped(t, f"i{k}"))
    assert out == [(f"c{k}", f"d{k}", f"i{k}") for k in range(5)]


def test_no_match_beyond_slop_and_missing_input():
    out = []
    sync = ApproximateTimeSync(2, lambda *m: out.append(m), slop=0.01)
    sync.add(0, stamped(1.0, "a"))
    sync.add(1, stamped(1.5, "b"))
    assert out == []
    sync3 = ApproximateTimeSync(3, lambda *m: out.append(m), slop=1.0)
    for k in range(10):
        sync3.add(0, stamped(k, "c"))
        sync3.add(1, stamped(k, "d"))
    assert out == []  # camera_info never came


def test_late_input_matches_newest_and_drops_older():
    out = []
    sync = ApproximateTimeSync(2, lambda *m: out.append(tuple(x.tag for x in m)), queue_size=3, slop=0.01)
    for k in range(3):
        sync.add(0, stamped(k, f"c{k}"))
    sync.add(1, stamped(2.0, "d2"))
    assert out == [("c2", "d2")]
    sync.add(1, stamped(1.0, "d1"))  # older than what was emitted: c1 was dropped, no match
    assert out == [("c2", "d2")]


def test_queue_is_bounded():
    sync = ApproximateTimeSync(2, lambda *m: None, queue_size=4, slop=0.0)
    for k in range(100):
        sync.add(0, stamped(k, "c"))
    assert len(sync._queues[0]) == 4
