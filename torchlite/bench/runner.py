"""Times benchmark cases and prints medians and speed-up ratios.

Cases of one group are timed interleaved (round-robin, one call each per
round) so that load on a shared machine hits all of them alike; the ratio of
two medians from one run is far steadier than either time alone.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field

import torch

from torchlite.bench.registry import Case, CaseUnavailable, groups

log = logging.getLogger(__name__)


@dataclass
class CaseResult:
    group: str
    name: str
    median_s: float
    p25_s: float
    p75_s: float
    calls: int
    gbps: float | None
    # Figures the case measured itself (its callable's bench_metrics()).
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class TargetResult:
    group: str
    case: str
    versus: str
    want: float
    got: float | None

    @property
    def met(self) -> bool:
        return self.got is not None and self.got >= self.want


@dataclass
class LimitResult:
    group: str
    case: str
    metric: str
    limit: float
    got: float | None

    @property
    def met(self) -> bool:
        return self.got is not None and self.got <= self.limit


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _time_once(fn, device: str, inner: int) -> float:
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(inner):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / inner


def run_group(cases: list[Case], *, quick: bool, device: str, min_round_s: float = 0.02) -> list[CaseResult]:
    fns, kept = [], []
    for c in cases:
        log.info("setting up %s / %s", c.group, c.name)
        try:
            fns.append(c.make(quick, device))
        except CaseUnavailable as e:
            log.warning("skipped %s / %s: %s", c.group, c.name, e)
            continue
        kept.append(c)
    cases = kept
    if not cases:
        return []
    # Warm up (first-call costs: allocator, caches, compilation) and calibrate
    # how many calls make one timing long enough to read reliably.
    inner = []
    for fn in fns:
        first = _time_once(fn, device, 1)
        t = _time_once(fn, device, 1)
        t = min(t, first)
        inner.append(max(1, min(1000, int(min_round_s / max(t, 1e-9)))))
    rounds = min([7 if quick else 25] + [c.max_rounds for c in cases if c.max_rounds])
    samples: list[list[float]] = [[] for _ in cases]
    for r in range(rounds):
        order = list(range(len(cases)))
        # Rotate the order each round so no case always runs right after the
        # same neighbour (caches, turbo and thermal effects).
        k = r % len(order)
        order = order[k:] + order[:k]
        for i in order:
            samples[i].append(_time_once(fns[i], device, inner[i]))
    out = []
    for c, fn, s, n in zip(cases, fns, samples, inner):
        q = statistics.quantiles(s, n=4) if len(s) >= 2 else [s[0]] * 3
        med = statistics.median(s)
        out.append(
            CaseResult(
                group=c.group,
                name=c.name,
                median_s=med,
                p25_s=q[0],
                p75_s=q[2],
                calls=len(s) * n,
                gbps=(c.nbytes / med / 1e9) if c.nbytes else None,
                metrics=dict(fn.bench_metrics()) if hasattr(fn, "bench_metrics") else {},
            )
        )
    return out


def evaluate_targets(cases: list[Case], results: list[CaseResult]) -> list[TargetResult]:
    by_name = {(r.group, r.name): r for r in results}
    out = []
    for c in cases:
        for versus, want in c.targets.items():
            mine = by_name.get((c.group, c.name))
            other = by_name.get((c.group, versus))
            got = other.median_s / mine.median_s if (mine and other) else None
            out.append(TargetResult(c.group, c.name, versus, want, got))
    return out


def evaluate_limits(cases: list[Case], results: list[CaseResult]) -> list[LimitResult]:
    by_name = {(r.group, r.name): r for r in results}
    out = []
    for c in cases:
        mine = by_name.get((c.group, c.name))
        for metric, limit in c.limits.items():
            got = mine.metrics.get(metric) if mine else None
            out.append(LimitResult(c.group, c.name, metric, limit, got))
    return out


def machine_info(device: str) -> dict:
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": device,
        "loadavg_start": os.getloadavg(),
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name()
    return info


def format_table(results: list[CaseResult], targets: list[TargetResult], limits: list[LimitResult] = ()) -> str:
    lines = []
    for group, rs in _by_group(results).items():
        base = rs[0]
        lines.append("")
        lines.append(f"== {group}")
        lines.append(f"   {'case':<58} {'median':>10} {'IQR':>17} {'GB/s':>7} {'vs first':>9}")
        for r in rs:
            gb = f"{r.gbps:7.2f}" if r.gbps is not None else " " * 7
            iqr = f"{_ms(r.p25_s)}-{_ms(r.p75_s)}"
            lines.append(
                f"   {r.name[:58]:<58} {_ms(r.median_s):>10} {iqr:>17} {gb} {base.median_s / r.median_s:8.2f}x"
            )
        for t in targets:
            if t.group != group:
                continue
            got = f"{t.got:.2f}x" if t.got is not None else "n/a"
            verdict = "met" if t.met else ("MISSED" if t.got is not None else "not run")
            lines.append(f"   target: {t.case} >= {t.want:g}x {t.versus}: {got} {verdict}")
        for r in rs:
            for metric, value in r.metrics.items():
                lines.append(f"   {r.name}: {metric} {value:.3g}")
        for lim in limits:
            if lim.group != group:
                continue
            got = f"{lim.got:.3g}" if lim.got is not None else "n/a"
            verdict = "met" if lim.met else "MISSED"
            lines.append(f"   limit: {lim.case}: {lim.metric} <= {lim.limit:g}: {got} {verdict}")
    return "\n".join(lines)


def _by_group(results: list[CaseResult]) -> dict[str, list[CaseResult]]:
    out: dict[str, list[CaseResult]] = {}
    for r in results:
        out.setdefault(r.group, []).append(r)
    return out


def _ms(s: float) -> str:
    return f"{s * 1e3:.3f} ms" if s < 1 else f"{s:.3f} s"


def run(cases: list[Case], *, quick: bool, device: str, only: str | None = None, progress: bool = True):
    selected = [c for c in cases if device.split(":")[0] in c.devices and (only is None or only in c.group)]
    grouped = groups(selected)
    results: list[CaseResult] = []
    try:
        from tqdm import tqdm

        it = tqdm(grouped.items(), desc="benchmark groups", disable=not progress)
    except ImportError:  # tqdm is a dependency; this only guards odd installs
        it = grouped.items()
    for _, group_cases in it:
        results.extend(run_group(group_cases, quick=quick, device=device))
    return results, evaluate_targets(selected, results), evaluate_limits(selected, results)


def to_json(info: dict, results: list[CaseResult], targets: list[TargetResult],
            limits: list[LimitResult] = ()) -> str:
    info = dict(info, loadavg_end=os.getloadavg())
    return json.dumps(
        {
            "machine": info,
            "results": [asdict(r) for r in results],
            "targets": [dict(asdict(t), met=t.met) for t in targets],
            "limits": [dict(asdict(lim), met=lim.met) for lim in limits],
        },
        indent=2,
    )
