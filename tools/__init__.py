"""Benchmarks and test harnesses: not part of the installed package.

Run from a checkout's root, for example ``python -m tools.bench_pipeline`` or
``python -m tools.fuzz_node``; the tests import them the same way (pytest.ini puts the root on
the path). Nothing in :mod:`densefusion_ros` imports them.
"""
