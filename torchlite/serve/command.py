"""`torchlite serve`: the models of a bundle behind HTTP.

    torchlite serve --models runs/demo/models                  # http://127.0.0.1:8000
    curl -s --data-binary @crops.npy http://127.0.0.1:8000/v1/classify
    curl -s -F mhd=@scan.mhd -F raw=@scan.raw http://127.0.0.1:8000/v1/analyze

Bound to 127.0.0.1 unless ``--host`` says otherwise: the service has no
authentication, so exposing it is a decision to make explicitly. On SIGINT or
SIGTERM uvicorn stops accepting connections, lets the requests in flight
finish (at most ``--graceful-timeout`` seconds) and then stops the batcher.
"""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from torchlite.analysis.model_arguments import add_model_arguments

    add_model_arguments(p)
    p.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8000, help="TCP port")
    batching = p.add_argument_group("batching and limits")
    batching.add_argument("--max-batch", type=int, default=64, help="crops per model call, across requests")
    batching.add_argument("--max-wait-ms", type=float, default=5.0,
                          help="longest a request waits for its batch to fill")
    batching.add_argument("--max-queue", type=int, default=1024,
                          help="crops waiting for the model; more get 503 + Retry-After")
    batching.add_argument("--max-upload-mb", type=float, default=1024,
                          help="largest request body (scan upload or .npy of crops); more get 413")
    batching.add_argument("--max-analyses", type=int, default=4,
                          help="scans uploaded or analyzed at once; more get 503 + Retry-After")
    p.add_argument("--threshold", type=float, default=0.5, help="segmentation probability that marks a voxel")
    p.add_argument("--tmp-dir", metavar="DIR", default=None, help="where uploaded scans are written while analyzed")
    p.add_argument("--graceful-timeout", type=float, default=30.0,
                   help="seconds to let in-flight requests finish on shutdown")


def _check(args: argparse.Namespace) -> str | None:
    if not 0 < args.port < 65536:
        return f"--port {args.port}: expected 1..65535"
    for name in ("max_batch", "max_queue", "max_analyses"):
        if getattr(args, name) < 1:
            return f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}"
    if args.max_wait_ms < 0 or args.max_upload_mb <= 0 or args.graceful_timeout < 0:
        return "--max-wait-ms and --graceful-timeout must be >= 0, --max-upload-mb > 0"
    if not 0.0 <= args.threshold < 1.0:
        return f"--threshold {args.threshold}: expected a probability in [0, 1)"
    return None


def run(args: argparse.Namespace) -> int:
    import torch
    import uvicorn

    from torchlite.analysis.bundle import BundleError, load_bundle
    from torchlite.analysis.pipeline import AnalysisConfig
    from torchlite.serve.app import MiB, ServeConfig, create_app

    if problem := _check(args):
        log.error("%s", problem)
        return 2
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        bundle = load_bundle(args.models, seg=args.seg, cls=args.cls, mal=args.mal, device=device)
    except BundleError as e:
        log.error("%s", e)
        return 2
    upload = int(args.max_upload_mb * MiB)
    config = ServeConfig(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_queue=args.max_queue,
                         max_upload_bytes=upload, max_scan_bytes=max(2 * upload, 2048 * MiB),
                         max_analyses=args.max_analyses, tmp_dir=args.tmp_dir,
                         analysis=AnalysisConfig(threshold=args.threshold))
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("listening on %s: the service has no authentication", args.host)
    server = uvicorn.Server(uvicorn.Config(create_app(bundle, config), host=args.host, port=args.port,
                                           timeout_graceful_shutdown=args.graceful_timeout, log_config=None,
                                           access_log=False))
    try:
        server.run()  # returns after SIGINT/SIGTERM, once in-flight requests are done
    except KeyboardInterrupt:
        # uvicorn re-raises the signal it caught once it has shut down
        # gracefully: for SIGINT that is this exception (and the exit is
        # clean); SIGTERM ends the process with its default action, as
        # process managers expect.
        log.info("stopped")
    # uvicorn reports a failed start (port in use) by returning without having started.
    return 0 if server.started else 1
