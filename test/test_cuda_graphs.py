"""CudaGraphs: replays equal eager calls across shapes; least recently used graphs are dropped."""

from __future__ import annotations

import pytest
import torch

from densefusion_ros.cuda_graphs import CudaGraphs


def _fn(x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.relu(x @ w)
    return y, y.sum(dim=1) + x.mean()


def test_cpu_inputs_run_eagerly():
    graphs = CudaGraphs(_fn)
    x, w = torch.randn(4, 3), torch.randn(3, 5)
    for a, b in zip(graphs(x, w), _fn(x, w)):
        torch.testing.assert_close(a, b)
    assert len(graphs) == 0


def test_signatures_are_captured_once_they_recur():
    graphs = CudaGraphs(_fn, capture_after=3)
    assert [graphs._due("a"), graphs._due("b"), graphs._due("a"), graphs._due("a")] == [False, False, False, True]
    assert graphs._due("b") is False and graphs._due("b") is True
    first = CudaGraphs(_fn, capture_after=1)
    assert first._due("a") and first._due("a")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_replays_equal_eager_across_shapes():
    graphs = CudaGraphs(_fn, max_graphs=2, capture_after=1)
    w = torch.randn(8, 16, device="cuda")
    gen = torch.Generator(device="cuda").manual_seed(0)
    with torch.inference_mode():
        for rows in (4, 7, 4, 9, 7, 4):  # 3 shapes through 2 slots: captures, replays and evictions
            x = torch.randn(rows, 8, device="cuda", generator=gen)
            got, want = graphs(x, w), _fn(x, w)
            assert graphs.enabled
            for a, b in zip(got, want):
                torch.testing.assert_close(a, b)
            first = got[0].clone()
            graphs(torch.zeros_like(x), w)  # a later replay must not overwrite returned tensors
            torch.testing.assert_close(got[0], first)
    assert len(graphs) == 2
