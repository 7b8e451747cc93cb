"""Operator benchmarks: each operator against its plain-PyTorch reference.

The cases are defined once (``torchlite.bench.cases``) and run two ways:
``torchlite bench`` (this package's runner: interleaved timing, medians and
speed-up ratios measured in one run) and the pytest-benchmark suite in
``benchmarks/``.
"""
