"""The benchmark runner's bookkeeping (not timings: those are never asserted)."""

import json

import pytest

from torchlite.bench import registry, runner
from torchlite.bench.registry import Case


def _noop_case(group, name, targets=None):
    return Case(group=group, name=name, make=lambda quick, device: (lambda: 1), targets=targets or {})


def test_targets_compare_medians_within_a_group():
    cases = [_noop_case("g", "ref"), _noop_case("g", "op", {"ref": 3.0}), _noop_case("h", "op", {"ref": 1.0})]
    results = [
        runner.CaseResult("g", "ref", 0.030, 0.029, 0.031, 10, None),
        runner.CaseResult("g", "op", 0.010, 0.009, 0.011, 10, None),
        runner.CaseResult("h", "op", 0.010, 0.009, 0.011, 10, None),
    ]
    targets = runner.evaluate_targets(cases, results)
    assert targets[0].got == pytest.approx(3.0) and targets[0].met
    # A target whose "versus" case is in another group cannot be computed.
    assert targets[1].got is None and not targets[1].met
    table = runner.format_table(results, targets)
    assert "3.00x" in table and "n/a not run" in table


def test_run_group_measures_every_case_and_json_roundtrips():
    calls = {"a": 0, "b": 0}

    def make(name):
        def _make(quick, device):
            def fn():
                calls[name] += 1
                return name
            return fn
        return _make

    cases = [Case("g", "a", make("a")), Case("g", "b", make("b"), targets={"a": 0.0}, nbytes=1000)]
    results = runner.run_group(cases, quick=True, device="cpu", min_round_s=0.0)
    assert [r.name for r in results] == ["a", "b"]
    assert calls["a"] >= 7 and calls["b"] >= 7
    assert results[1].gbps is not None and results[0].gbps is None
    doc = json.loads(runner.to_json(runner.machine_info("cpu"), results, runner.evaluate_targets(cases, results)))
    assert doc["targets"][0]["met"] is True
    assert {r["name"] for r in doc["results"]} == {"a", "b"}


def test_registry_rejects_duplicates():
    c = _noop_case("dup-group-for-test", "x")
    registry.register(c)
    try:
        with pytest.raises(ValueError, match="twice"):
            registry.register(c)
    finally:
        registry._CASES.remove(c)


def test_every_registered_target_names_a_case_of_its_group():
    cases = registry.all_cases()
    names = {(c.group, c.name) for c in cases}
    for c in cases:
        for versus in c.targets:
            assert (c.group, versus) in names, f"{c.group}/{c.name} targets unknown case {versus!r}"


def test_limits_read_the_figures_a_case_measures_itself():
    class Loop:
        def __init__(self, share):
            self.share = share

        def __call__(self):
            return 1

        def bench_metrics(self):
            return {"data wait share": self.share}

    cases = [Case("g", "slow data", lambda quick, device: Loop(0.4), limits={"data wait share": 0.1}),
             Case("g", "fast data", lambda quick, device: Loop(0.02), limits={"data wait share": 0.1}),
             Case("g", "no figure", lambda quick, device: (lambda: 1), limits={"data wait share": 0.1})]
    results = runner.run_group(cases, quick=True, device="cpu", min_round_s=0.0)
    limits = runner.evaluate_limits(cases, results)
    assert [(lim.got, lim.met) for lim in limits] == [(0.4, False), (0.02, True), (None, False)]
    table = runner.format_table(results, [], limits)
    assert "data wait share <= 0.1: 0.4 MISSED" in table and "0.02 met" in table
    doc = json.loads(runner.to_json(runner.machine_info("cpu"), results, [], limits))
    assert [lim["met"] for lim in doc["limits"]] == [False, True, False]


def _counting(calls, name, fail=None):
    def make(quick, device):
        if fail:
            raise registry.CaseUnavailable(fail)

        def fn():
            calls[name] = calls.get(name, 0) + 1
            return name
        return fn
    return make


def test_an_unavailable_case_is_skipped_and_its_target_not_run():
    calls = {}
    cases = [Case("g", "ref", _counting(calls, "ref")),
             Case("g", "app", _counting(calls, "app", fail="program not built"), targets={"ref": 1.2})]
    results = runner.run_group(cases, quick=True, device="cpu", min_round_s=0.0)
    assert [r.name for r in results] == ["ref"] and "app" not in calls
    targets = runner.evaluate_targets(cases, results)
    assert targets[0].got is None and not targets[0].met
    assert "not run" in runner.format_table(results, targets)


def test_max_rounds_caps_the_rounds_of_the_whole_group():
    calls = {}
    cases = [Case("g", "slow", _counting(calls, "slow"), max_rounds=3), Case("g", "other", _counting(calls, "other"))]
    runner.run_group(cases, quick=False, device="cpu", min_round_s=0.0)
    # two warm-up / calibration calls, then one call per round (min_round_s=0: one call is a round)
    assert calls == {"slow": 2 + 3, "other": 2 + 3}
