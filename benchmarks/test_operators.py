"""pytest-benchmark face of the operator benchmark cases.

The cases are defined once in torchlite.bench.cases; `torchlite bench` runs
them with interleaved timing and prints speed-up ratios, this file runs them
under pytest-benchmark (`pytest benchmarks/`, compare groups with
`--benchmark-group-by=group`). The test suite runs it with
--benchmark-disable, which calls each case once, so no case can rot.
"""

import pytest

from torchlite.bench import registry

CASES = registry.all_cases()


@pytest.mark.parametrize("case", CASES, ids=[f"{c.group} | {c.name}" for c in CASES])
def test_operator_case(benchmark, case):
    # Disabled (the test suite): one call to prove the case runs, on the quick
    # workload (the whole-scan analysis case is minutes at full size).
    try:
        fn = case.make(benchmark.disabled, "cpu")
    except registry.CaseUnavailable as e:
        pytest.skip(str(e))
    benchmark.group = case.group
    benchmark.extra_info["nbytes"] = case.nbytes
    result = benchmark(fn)
    assert result is not None
    if hasattr(fn, "bench_metrics"):  # e.g. a training loop's share of time waiting for data
        benchmark.extra_info.update(fn.bench_metrics())
