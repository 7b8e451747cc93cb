"""Cross-request batching: crops from many HTTP requests, one model call.

A model call has a fixed cost (launching kernels, oneDNN's setup, moving data
to the GPU) that a batch of 64 crops pays once and 64 single-crop requests pay
64 times. :class:`CropBatcher` queues each request's crops; a single worker
task takes up to ``max_batch`` crops, from as many requests as it needs,
once that many wait or the oldest has waited ``max_wait_ms``, runs the models
in a one-thread executor (so the event loop keeps accepting and answering
requests while they run) and hands each request its own slice of the
results. A request larger than ``max_batch`` is spread over several batches.

The queue is bounded in crops (``max_queue``): past it, :meth:`submit`
raises :class:`QueueFull` at once, which the app answers with 503 and
Retry-After, instead of letting memory and latency grow without limit.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import torch

from torchlite.serve.metrics import ServeMetrics

log = logging.getLogger(__name__)

# crops (n, 1, 32, 48, 48) float32 -> name -> (n,) float32 tensor, or None for a model that is not loaded
InferFn = Callable[[torch.Tensor], dict[str, torch.Tensor | None]]


class QueueFull(Exception):
    """The batcher holds ``queued`` crops; ``requested`` more would pass ``limit``."""

    def __init__(self, queued: int, requested: int, limit: int):
        self.queued, self.requested, self.limit = queued, requested, limit
        super().__init__(f"classify queue full: {queued} crops waiting, {requested} more would pass "
                         f"--max-queue {limit}")


class BatcherClosed(Exception):
    """The service is shutting down and takes no new work."""


@dataclass
class _Request:
    crops: torch.Tensor  # (n, 1, 32, 48, 48)
    future: asyncio.Future
    arrived: float  # loop time
    taken: int = 0  # crops handed to a batch so far
    outputs: dict[str, torch.Tensor | None] = field(default_factory=dict)
    filled: int = 0  # crops whose results are in ``outputs``


class CropBatcher:
    def __init__(self, infer: InferFn, *, max_batch: int, max_wait_ms: float, max_queue: int,
                 metrics: ServeMetrics | None = None):
        if max_batch < 1 or max_queue < 1 or max_wait_ms < 0:
            raise ValueError("max_batch and max_queue must be >= 1, max_wait_ms >= 0")
        self.infer = infer
        self.max_batch, self.max_wait, self.max_queue = max_batch, max_wait_ms / 1000.0, max_queue
        self.metrics = metrics
        self._pending: collections.deque[_Request] = collections.deque()
        self._queued = 0  # crops in _pending not yet taken by a batch
        self._has_work: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False

    @property
    def queued(self) -> int:
        return self._queued

    def start(self) -> None:
        """Start the worker on the running event loop."""
        self._has_work = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="torchlite-batcher")
        self._worker = asyncio.get_running_loop().create_task(self._run(), name="torchlite-batcher")

    async def stop(self, drain_timeout: float = 30.0) -> None:
        """Refuse new work, finish what is queued (up to ``drain_timeout`` s), stop the worker."""
        self._closed = True
        deadline = time.monotonic() + drain_timeout
        while self._pending and time.monotonic() < deadline and self._worker and not self._worker.done():
            await asyncio.sleep(0.01)
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        for request in self._pending:
            if not request.future.done():
                request.future.set_exception(BatcherClosed("the service shut down before this request ran"))
        self._pending.clear()
        self._set_queued(0)
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    async def submit(self, crops: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """Results for ``crops`` (n, 1, 32, 48, 48) float32, once a batch holding them has run."""
        if self._closed or self._worker is None:
            raise BatcherClosed("the service is shutting down")
        n = int(crops.shape[0])
        if self._queued + n > self.max_queue:
            raise QueueFull(self._queued, n, self.max_queue)
        loop = asyncio.get_running_loop()
        request = _Request(crops=crops, future=loop.create_future(), arrived=loop.time())
        if n == 0:
            return {}
        self._pending.append(request)
        self._set_queued(self._queued + n)
        self._has_work.set()
        return await request.future

    def _set_queued(self, value: int) -> None:
        self._queued = value
        if self.metrics is not None:
            self.metrics.queue_depth.set(value)

    def _drop_abandoned(self) -> None:
        # Finished requests leave the front of the queue. Batches take the
        # oldest first, so that is where they are; a failed or abandoned one
        # (its caller went away) further back is skipped by _take and leaves
        # when it reaches the front, its unrun crops uncounted.
        while self._pending and self._pending[0].future.done():
            gone = self._pending.popleft()
            self._set_queued(self._queued - (gone.crops.shape[0] - gone.taken))

    def _take(self) -> list[tuple[_Request, int, int]]:
        """Up to max_batch crops from the oldest requests: (request, start, end) slices."""
        batch, room = [], self.max_batch
        self._drop_abandoned()
        for request in self._pending:
            if room == 0:
                break
            left = request.crops.shape[0] - request.taken
            if left and request.future.done():  # failed or abandoned: its crops leave the queue unrun
                request.taken += left
                self._set_queued(self._queued - left)
                continue
            if left == 0:
                continue
            k = min(left, room)
            batch.append((request, request.taken, request.taken + k))
            request.taken += k
            room -= k
            self._set_queued(self._queued - k)
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._has_work.wait()
            self._drop_abandoned()
            if not self._pending:
                self._has_work.clear()
                continue
            # Wait for a full batch, but never longer than max_wait past the
            # oldest request's arrival: batching may cost a caller at most that.
            deadline = self._pending[0].arrived + self.max_wait
            while self._queued < self.max_batch and (remaining := deadline - loop.time()) > 0:
                self._has_work.clear()
                try:
                    await asyncio.wait_for(self._has_work.wait(), remaining)
                except TimeoutError:
                    break
            batch = self._take()
            if not any(r.taken < r.crops.shape[0] for r in self._pending):
                self._has_work.clear()
            else:
                self._has_work.set()
            if batch:
                await self._run_batch(loop, batch)

    async def _run_batch(self, loop: asyncio.AbstractEventLoop, batch: list[tuple[_Request, int, int]]) -> None:
        crops = torch.cat([r.crops[s:e] for r, s, e in batch]) if len(batch) > 1 else \
            batch[0][0].crops[batch[0][1]:batch[0][2]]
        started = time.perf_counter()
        try:
            outputs = await loop.run_in_executor(self._executor, self.infer, crops)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            # A model error must fail only the request that caused it, not the
            # strangers it shared a batch with: rerun the slices one by one.
            if len(batch) > 1:
                log.warning("batch of %d crops failed (%s: %s); running its %d requests one by one",
                            crops.shape[0], type(e).__name__, e, len(batch))
                for item in batch:
                    await self._run_batch(loop, [item])
                return
            log.exception("a request's %d crops failed in the model", crops.shape[0])
            if not batch[0][0].future.done():
                batch[0][0].future.set_exception(e)
            self._drop_abandoned()
            return
        if self.metrics is not None:
            self.metrics.batch_size.observe(crops.shape[0])
            self.metrics.model_seconds.observe(time.perf_counter() - started)
            self.metrics.crops.inc(crops.shape[0])
        offset = 0
        for request, start, end in batch:
            k = end - start
            if not request.future.done():
                n = request.crops.shape[0]
                for name, values in outputs.items():
                    if values is None:
                        request.outputs[name] = None
                        continue
                    if name not in request.outputs:
                        request.outputs[name] = torch.empty(n, dtype=values.dtype)
                    request.outputs[name][start:end] = values[offset:offset + k]
                request.filled += k
                if request.filled == n:
                    request.future.set_result(request.outputs)
            offset += k
        self._drop_abandoned()
