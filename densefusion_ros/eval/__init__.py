"""Evaluation: bop_toolkit-style metrics and the ``evaluate`` command (through the pipeline).

* :mod:`.metrics`: ADD, ADD-S, YCB-Video AUC (VOCap), accuracy below a threshold.
* :mod:`.evaluate`: ``densefusion-ros evaluate``: per-pixel vs iterative vs ICP vs a model-free baseline.
"""
