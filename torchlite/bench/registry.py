"""The benchmark case registry: what is timed, grouped by workload.

A *group* is one workload (say "crop3d: 256 x 32x48x48 from 300x512x512
int16"); its *cases* are competing ways of doing it (the operator, the
book's loop, the batched reference...). Ratios are only ever computed
between cases of one group, timed in the same run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

# make(quick, device) -> a zero-argument callable that runs the workload once.
# Heavy inputs are built inside make(), outside the timed region. `quick`
# keeps the workload's sizes (ratios must hold at the sizes that matter) and
# only lets a case skip optional extras.
MakeFn = Callable[[bool, str], Callable[[], object]]


@dataclass(frozen=True)
class Case:
    group: str
    name: str
    make: MakeFn
    # Minimum speed-up over other cases of the group: {other case name: ratio}.
    # The runner reports each as met or missed; they are goals, not asserts.
    targets: dict[str, float] = field(default_factory=dict)
    # Bytes the workload must read + write at minimum; the runner prints the
    # effective bandwidth (bytes / median time) beside the time.
    nbytes: int | None = None
    # Devices this case can run on ("cpu", "cuda").
    devices: tuple[str, ...] = ("cpu",)
    # Upper bounds on figures the case measures itself besides its time:
    # {metric name: maximum}. The callable make() returns reports them from a
    # ``bench_metrics()`` method after timing (say, the share of a training
    # step spent waiting for data).
    limits: dict[str, float] = field(default_factory=dict)
    # At most this many timing rounds for the case's group (a full run has 25,
    # --quick 7): for workloads whose one call takes many seconds.
    max_rounds: int | None = None


class CaseUnavailable(RuntimeError):
    """Raised by a case's make() when the case cannot run here (say, a program
    that is not built); the runner skips the case and says why."""


_CASES: list[Case] = []


def register(case: Case) -> Case:
    if any(c.group == case.group and c.name == case.name for c in _CASES):
        raise ValueError(f"benchmark case registered twice: {case.group} / {case.name}")
    _CASES.append(case)
    return case


def all_cases() -> list[Case]:
    # Importing the case modules registers their cases.
    from torchlite.bench import cases  # noqa: F401

    return list(_CASES)


def groups(cases: list[Case]) -> dict[str, list[Case]]:
    out: dict[str, list[Case]] = {}
    for c in cases:
        out.setdefault(c.group, []).append(c)
    return out
