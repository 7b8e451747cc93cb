"""The FastAPI application of ``torchlite serve``.

Why FastAPI on uvicorn: asyncio, so thousands of waiting clients cost no
threads; uvicorn's graceful shutdown (stop accepting, finish what is in
flight); both are actively maintained, unlike TorchServe (archived) or the
book's Flask + hand-rolled threads.

Routes (every error is JSON ``{"error": message, "status": code}``):

- ``POST /v1/classify``: body a ``.npy`` array of crops, (N, 32, 48, 48) or
  (N, 1, 32, 48, 48), float32 or int16 HU (clipped to [-1000, 1000] as the
  analysis crops are) -> ``{"n", "nodule": [N], "malignancy": [N] or null,
  "request_id"}``; crops of concurrent requests are batched
  (:mod:`torchlite.serve.batcher`). N = 0 is a valid, empty request: 200 with
  empty lists. An optional ``X-Request-Id`` header is echoed as
  ``request_id``.
- ``POST /v1/analyze``: multipart upload of a scan (:mod:`torchlite.serve.uploads`)
  -> the per-scan JSON of ``torchlite analyze``'s report, ``path`` being the
  uploaded .mhd's name.
- ``GET /healthz``, ``GET /v1/models``, ``GET /metrics`` (Prometheus text).

Status codes: 400 bad input (the message names the part, field or
dimension), 404/405 unknown route or method, 413 over a size limit, 415 not
multipart, 503 + ``Retry-After`` when the classify queue or the analysis slots
are full or the service is stopping. A failing request never takes the
process down: handlers turn every exception into a JSON answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from torchlite.analysis.bundle import ModelBundle
from torchlite.analysis.classify import positive_probability
from torchlite.analysis.pipeline import AnalysisConfig, analyze_scan
from torchlite.data.datasets.patch_dataset import HU_CLIP, PATCH_SIZE
from torchlite.data.metaimage import ScanError
from torchlite.serve.batcher import BatcherClosed, CropBatcher, QueueFull
from torchlite.serve.metrics import CONTENT_TYPE, ServeMetrics
from torchlite.serve.uploads import UploadError, client_message, received_scan

log = logging.getLogger(__name__)

MiB = 1 << 20
CROP_DTYPES = (np.dtype(np.float32), np.dtype(np.int16))  # HU as the crops are made, or as the scans store it
ROUTES = ("/healthz", "/metrics", "/v1/models", "/v1/classify", "/v1/analyze")


@dataclass(frozen=True)
class ServeConfig:
    max_batch: int = 64  # crops per model call
    max_wait_ms: float = 5.0  # longest a crop waits for its batch to fill
    max_queue: int = 1024  # crops waiting for the batcher; more: 503
    max_upload_bytes: int = 1024 * MiB  # request body: a scan upload or a .npy of crops; more: 413
    max_scan_bytes: int = 2048 * MiB  # an uploaded scan's voxels once decompressed/unzipped; more: 413
    max_analyses: int = 4  # scans being uploaded, waiting or analyzed at once; more: 503
    retry_after_s: int = 1  # Retry-After of a 503
    tmp_dir: str | None = None  # where uploads are written (default: the system's temporary folder)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        self.status, self.message, self.headers = status, message, headers
        super().__init__(message)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


def parse_crops(body: bytes, max_queue: int) -> torch.Tensor:
    """A ``.npy`` body -> (N, 1, 32, 48, 48) float32 HU in [-1000, 1000]; ApiError naming what is wrong."""
    if not body.startswith(b"\x93NUMPY"):
        raise ApiError(400, "body is not a .npy file (no \\x93NUMPY magic): send numpy.save() output of "
                            "crops shaped (N, 32, 48, 48)")
    try:
        array = np.load(io.BytesIO(body), allow_pickle=False)
    except Exception as e:  # numpy raises ValueError, EOFError, OSError... for a damaged file
        raise ApiError(400, f"body is not a readable .npy array: {e}") from None
    if not isinstance(array, np.ndarray):
        raise ApiError(400, "body is not a single .npy array")
    if array.dtype.newbyteorder("=") not in CROP_DTYPES or array.dtype.kind not in "fi":
        raise ApiError(400, f"crops dtype {array.dtype} is not supported: send float32 or int16 HU")
    size = tuple(PATCH_SIZE)
    if not (array.ndim == 4 and array.shape[1:] == size or array.ndim == 5 and array.shape[1:] == (1, *size)):
        raise ApiError(400, f"crops shape {tuple(array.shape)}: expected (N, {', '.join(map(str, size))}) or "
                            f"(N, 1, {', '.join(map(str, size))})")
    n = array.shape[0]
    if n > max_queue:
        raise ApiError(413, f"{n} crops in one request, more than the queue holds (--max-queue {max_queue}): "
                            "split the request")
    crops = torch.from_numpy(array.astype(np.float32)).reshape(n, 1, *size)
    if array.dtype.kind == "f" and not torch.isfinite(crops).all():
        raise ApiError(400, "crops hold NaN or infinite values")
    return crops.clamp_(*HU_CLIP)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"body of {declared} bytes is over the {limit} byte limit (--max-upload-mb)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"body is over the {limit} byte limit (--max-upload-mb)")
        chunks.append(chunk)
    return b"".join(chunks)


class MetricsMiddleware:
    """Counts and times every HTTP request (pure ASGI: the body streams through untouched)."""

    def __init__(self, app, metrics: ServeMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        # Unknown paths share one label: a scanner probing URLs must not grow the metrics without bound.
        route = scope["path"] if scope["path"] in ROUTES else "other"
        status = 500
        started = time.perf_counter()

        async def send_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight.add(1)
        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.in_flight.add(-1)
            self.metrics.requests.inc(method=scope["method"], route=route, status=str(status))
            self.metrics.latency.observe(time.perf_counter() - started, route=route)


def make_infer(bundle: ModelBundle, batch_size: int):
    """The batcher's model call: nodule and malignancy probabilities of a batch of crops."""

    def infer(crops: torch.Tensor) -> dict[str, torch.Tensor | None]:
        nodule = positive_probability(bundle.cls, crops, batch_size=batch_size, device=bundle.device)
        malignancy = (positive_probability(bundle.mal, crops, batch_size=batch_size, device=bundle.device)
                      if bundle.mal is not None else None)
        return {"nodule": nodule, "malignancy": malignancy}

    return infer


def create_app(bundle: ModelBundle, config: ServeConfig = ServeConfig()) -> FastAPI:
    from torchlite import __version__

    metrics = ServeMetrics(config.max_batch)
    batcher = CropBatcher(make_infer(bundle, config.max_batch), max_batch=config.max_batch,
                          max_wait_ms=config.max_wait_ms, max_queue=config.max_queue, metrics=metrics)
    retry = {"Retry-After": str(config.retry_after_s)}
    analyses = {"active": 0}
    analysis_slot = asyncio.Semaphore(1)  # one scan on the models at a time: CPU cores are shared anyway

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        loaded = [task for task in ("seg", "cls", "mal") if getattr(bundle, task) is not None]
        log.info("serving %s models on %s (batches of up to %d crops, %g ms wait, queue %d crops)",
                 "/".join(loaded), bundle.device, config.max_batch, config.max_wait_ms, config.max_queue)
        yield
        await batcher.stop()  # uvicorn has finished the in-flight requests by now

    app = FastAPI(title="torchlite", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.batcher, app.state.metrics, app.state.config = batcher, metrics, config
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError):
        return _error(e.status, e.message, e.headers)

    @app.exception_handler(UploadError)
    async def upload_error(request: Request, e: UploadError):
        return _error(e.status, e.message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException):
        message = {404: f"no route {request.method} {request.url.path} (routes: {', '.join(ROUTES)})",
                   405: f"{request.method} is not allowed on {request.url.path}"}.get(e.status_code, str(e.detail))
        return _error(e.status_code, message, getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, e: Exception):
        log.exception("%s %s failed", request.method, request.url.path)
        return _error(500, f"internal error: {type(e).__name__}: {e}")

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok", "queue_depth_crops": batcher.queued}

    @app.get("/metrics")
    async def prometheus():
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/v1/models")
    async def models():
        return {"torchlite_version": __version__, "device": str(bundle.device),
                "models": {task: bundle.info.get(task, {"task": task}) if getattr(bundle, task) is not None
                           else None for task in ("seg", "cls", "mal")},
                "batching": {"max_batch": config.max_batch, "max_wait_ms": config.max_wait_ms,
                             "max_queue": config.max_queue}}

    @app.post("/v1/classify")
    async def classify(request: Request):
        body = await read_body(request, config.max_upload_bytes)
        crops = await asyncio.to_thread(parse_crops, body, config.max_queue) if len(body) > MiB else \
            parse_crops(body, config.max_queue)
        del body
        try:
            outputs = await batcher.submit(crops)
        except QueueFull as e:
            metrics.rejected.inc(route="/v1/classify")
            raise ApiError(503, f"{e}; retry after {config.retry_after_s} s", retry) from None
        except BatcherClosed as e:
            raise ApiError(503, str(e), retry) from None
        nodule, malignancy = outputs.get("nodule"), outputs.get("malignancy")
        n = crops.shape[0]
        return {"n": n, "nodule": nodule.tolist() if nodule is not None else [],
                "malignancy": None if bundle.mal is None else (malignancy.tolist() if malignancy is not None else []),
                "request_id": request.headers.get("x-request-id")}

    @app.post("/v1/analyze")
    async def analyze(request: Request):
        # Refuse before reading the upload, not after storing a gigabyte of it.
        if analyses["active"] >= config.max_analyses:
            metrics.rejected.inc(route="/v1/analyze")
            raise ApiError(503, f"{analyses['active']} scans are already being analyzed; retry after "
                                f"{config.retry_after_s} s", retry)
        analyses["active"] += 1
        metrics.analyses.set(analyses["active"])
        try:
            async with received_scan(request, max_bytes=config.max_upload_bytes,
                                     max_scan_bytes=config.max_scan_bytes, tmp_root=config.tmp_dir) as (header, folder):
                async with analysis_slot:
                    result = await asyncio.to_thread(_analyze, header.path, folder, bundle, config.analysis)
            return result
        finally:
            analyses["active"] -= 1
            metrics.analyses.set(analyses["active"])

    return app


def _analyze(mhd_path, folder, bundle: ModelBundle, config: AnalysisConfig) -> dict:
    from torchlite.data.scan import CtScan

    # Scans that cannot be mapped in place (compressed, other element types)
    # are converted into the upload's folder, so they go when it goes.
    scan = CtScan(mhd_path, cache_dir=folder / "cache")
    try:
        try:
            scan.open()
        except ScanError as e:
            raise UploadError(400, client_message(e, folder)) from None
        result = analyze_scan(scan, bundle, config).to_json()
    finally:
        scan.close()
    result["path"] = mhd_path.name
    return result
