"""The service's counters, gauges and histograms, in Prometheus text format.

``prometheus_client`` would do this, but the service needs four metric kinds'
worth of it and no extra dependency: a counter and a histogram are a dict of
floats keyed by label values. Everything is updated from the event loop's
thread or under a lock, and rendered on ``GET /metrics``
(text exposition format 0.0.4).
"""

from __future__ import annotations

import bisect
import math
import threading

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: tuple[str, ...], values: tuple[str, ...], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(x: float) -> str:
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    return repr(float(x)) if not float(x).is_integer() else str(int(x))


class _Metric:
    kind = ""

    def __init__(self, name: str, help_text: str, labels: tuple[str, ...] = ()):
        self.name, self.help, self.label_names = name, help_text, tuple(labels)
        self._lock = threading.Lock()

    def _key(self, labels: dict[str, str]) -> tuple[str, ...]:
        if set(labels) != set(self.label_names):
            raise ValueError(f"{self.name}: labels {sorted(labels)} != {sorted(self.label_names)}")
        return tuple(str(labels[n]) for n in self.label_names)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]


class Counter(_Metric):
    kind = "counter"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._values: dict[tuple[str, ...], float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError(f"{self.name}: a counter only goes up")
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        return self._values.get(self._key(labels), 0.0)

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        if not items and not self.label_names:
            items = [((), 0.0)]
        return self.header() + [f"{self.name}{_labels(self.label_names, k)} {_number(v)}" for k, v in items]


class Gauge(_Metric):
    kind = "gauge"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._value = 0.0

    def set(self, value: float) -> None:
        self._value = float(value)

    def add(self, amount: float) -> None:
        with self._lock:
            self._value += amount

    def value(self) -> float:
        return self._value

    def render(self) -> list[str]:
        return self.header() + [f"{self.name} {_number(self._value)}"]


class Histogram(_Metric):
    """Cumulative buckets (``le``), ``_sum`` and ``_count`` per label set."""

    kind = "histogram"

    def __init__(self, name: str, help_text: str, buckets, labels: tuple[str, ...] = ()):
        super().__init__(name, help_text, labels)
        self.bounds = sorted(float(b) for b in buckets)
        # per label values: [count per bucket (last = +Inf)], sum
        self._series: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}

    def observe(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            counts, total = self._series.setdefault(key, ([0] * (len(self.bounds) + 1), [0.0]))
            counts[bisect.bisect_left(self.bounds, value)] += 1  # le: a value on a bound belongs to it
            total[0] += value

    def count(self, **labels: str) -> int:
        series = self._series.get(self._key(labels))
        return sum(series[0]) if series else 0

    def render(self) -> list[str]:
        lines = self.header()
        with self._lock:
            items = sorted((k, (list(c), s[0])) for k, (c, s) in self._series.items())
        for key, (counts, total) in items:
            running = 0
            for bound, n in zip(self.bounds + [math.inf], counts):
                running += n
                le = 'le="' + _number(bound) + '"'
                lines.append(f"{self.name}_bucket{_labels(self.label_names, key, le)} {running}")
            lines.append(f"{self.name}_sum{_labels(self.label_names, key)} {_number(total)}")
            lines.append(f"{self.name}_count{_labels(self.label_names, key)} {running}")
        return lines


LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ServeMetrics:
    """Every metric the service exports; one instance per app."""

    def __init__(self, max_batch: int):
        self.requests = Counter("torchlite_requests_total", "HTTP requests answered, by route and status code",
                                ("method", "route", "status"))
        self.latency = Histogram("torchlite_request_duration_seconds",
                                 "time from request start to response end, by route", LATENCY_BUCKETS, ("route",))
        batch_buckets = sorted({1, 2, 4, 8, 16, 32, 64, 128, 256, 512, max_batch})
        self.batch_size = Histogram("torchlite_batch_size_crops", "crops per model call of the classify batcher",
                                    [b for b in batch_buckets if b <= max_batch])
        self.model_seconds = Histogram("torchlite_batch_duration_seconds",
                                       "seconds per batched model call (nodule and malignancy)", LATENCY_BUCKETS)
        self.queue_depth = Gauge("torchlite_queue_depth_crops", "crops waiting for the classify batcher")
        self.in_flight = Gauge("torchlite_requests_in_flight", "HTTP requests being handled")
        self.crops = Counter("torchlite_crops_classified_total", "crops classified")
        self.rejected = Counter("torchlite_queue_rejections_total", "requests refused with 503: queue full",
                                ("route",))
        self.analyses = Gauge("torchlite_analyses_in_progress", "scans being analyzed or waiting to be")

    def render(self) -> str:
        lines: list[str] = []
        for metric in (self.requests, self.latency, self.in_flight, self.queue_depth, self.batch_size,
                       self.model_seconds, self.crops, self.rejected, self.analyses):
            lines += metric.render()
        return "\n".join(lines) + "\n"
