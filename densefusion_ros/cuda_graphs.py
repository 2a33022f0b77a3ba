"""Replay a tensor function through CUDA graphs, one graph captured per input signature.

The pipeline's networks see small inputs on a GPU (a few crops, a few thousand points): their
time goes into launching hundreds of small kernels from Python, one by one. A CUDA graph records
those launches once and replays them with one call (PyTorch notes, "CUDA Graphs"). Shapes vary
from frame to frame (crop sizes, instance counts), so :class:`CudaGraphs` keeps one graph per
signature, least recently used first out, all drawing on one memory pool. That is safe because
graphs replay one at a time and each replay's outputs are cloned before the next one runs.

A capture costs far more than an eager call (docs/design_notes.md, 'cuda_graphs: capture
cost'), so a signature is captured only once it recurs (``capture_after`` sightings): a crop
size seen once runs eagerly and costs nothing extra.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["CudaGraphs"]

log = logging.getLogger(__name__)


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    inputs: tuple[torch.Tensor, ...]
    outputs: tuple[torch.Tensor, ...]


class CudaGraphs:
    """Call ``fn(*tensors) -> tuple of tensors`` through a CUDA graph per input shape and dtype.

    Args:
        fn: a function of CUDA tensors without host synchronisation (no ``.item()``, no
            value-dependent Python branches); it must return a tuple of tensors.
        name: for log lines.
        max_graphs: graphs kept; the least recently used is dropped beyond it.
        warmup: eager calls on a side stream before a capture (lazy CUDA / cuDNN set-up).
        capture_after: the sighting of a signature that captures it; earlier ones run eagerly.

    Capturing costs ``warmup`` eager calls and the capture; the result is then the graph's
    replay. If a capture fails, ``fn`` runs eagerly from then on (logged once). Inputs on the CPU
    always run eagerly.
    """

    def __init__(
        self,
        fn: Callable[..., tuple[torch.Tensor, ...]],
        *,
        name: str = "",
        max_graphs: int = 256,
        warmup: int = 2,
        capture_after: int = 2,
    ) -> None:
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "fn")
        self.max_graphs = max(1, int(max_graphs))
        self.warmup = max(1, int(warmup))
        self.capture_after = max(1, int(capture_after))
        self.enabled = True
        self._graphs: OrderedDict[tuple, _Graph] = OrderedDict()
        self._sightings: OrderedDict[tuple, int] = OrderedDict()
        self._pool = None

    def __len__(self) -> int:
        return len(self._graphs)

    def __call__(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if not self.enabled or not inputs[0].is_cuda:
            return self.fn(*inputs)
        key = tuple((tuple(x.shape), x.dtype, x.device) for x in inputs)
        entry = self._graphs.get(key)
        if entry is None:
            if not self._due(key):
                return self.fn(*inputs)
            entry = self._capture(inputs)
            if entry is None:
                return self.fn(*inputs)
            self._graphs[key] = entry
            while len(self._graphs) > self.max_graphs:
                self._graphs.popitem(last=False)
        else:
            self._graphs.move_to_end(key)
            for static, x in zip(entry.inputs, inputs):
                static.copy_(x)
        entry.graph.replay()
        return tuple(out.clone() for out in entry.outputs)

    def _due(self, key: tuple) -> bool:
        """Count a sighting of ``key`` (without a graph); True when it is the one to capture."""
        seen = self._sightings.pop(key, 0) + 1
        if seen >= self.capture_after:
            return True
        self._sightings[key] = seen
        while len(self._sightings) > 4 * self.max_graphs:
            self._sightings.popitem(last=False)
        return False

    def _capture(self, inputs: tuple[torch.Tensor, ...]) -> _Graph | None:
        static = tuple(x.clone() for x in inputs)
        device = static[0].device
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(self.warmup):
                self.fn(*static)
        torch.cuda.current_stream(device).wait_stream(side)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, pool=self._pool):
                outputs = self.fn(*static)
        except RuntimeError as e:
            log.warning("CUDA graph capture of %s failed, running it eagerly from now on: %s", self.name, e)
            self.enabled = False
            self._graphs.clear()
            return None
        return _Graph(graph, static, tuple(outputs))
