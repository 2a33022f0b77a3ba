"""tools.tracker_outputs: two saves compared bit for bit."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from tools import tracker_outputs


def _save(path, t_last: float) -> None:
    pose = ("mug", np.eye(3), np.array([0.0, 0.0, t_last]), float("nan"))
    frames = [(0, 0, [], []), (0, 1, [pose], ["(2, 'too few pixels')"])]
    path.write_bytes(pickle.dumps(frames))


def test_compare_counts_the_frames_that_differ_in_any_bit(tmp_path, capsys):
    a, b, c = tmp_path / "a.pkl", tmp_path / "b.pkl", tmp_path / "c.pkl"
    _save(a, 0.5)
    _save(b, 0.5)
    _save(c, np.nextafter(0.5, 1.0))  # one bit off
    assert tracker_outputs.compare(str(a), str(b)) == 0  # NaN fitness compares equal to itself
    assert tracker_outputs.compare(str(a), str(c)) == 1
    assert "differs: sequence 0 frame 1" in capsys.readouterr().out


def test_compare_refuses_saves_of_other_frames(tmp_path):
    a, b = tmp_path / "a.pkl", tmp_path / "b.pkl"
    _save(a, 0.5)
    b.write_bytes(pickle.dumps([(1, 0, [], [])]))
    with pytest.raises(SystemExit, match="different frames"):
        tracker_outputs.compare(str(a), str(b))
