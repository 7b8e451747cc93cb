"""`torchlite serve`: an HTTP service for the trained models (the book's chapter 15).

``POST /v1/analyze`` runs the whole-scan pipeline on an uploaded scan;
``POST /v1/classify`` classifies crops, batching requests from many clients
into one model call. :mod:`.app` builds the FastAPI application,
:mod:`.batcher` is the cross-request batching queue, :mod:`.uploads` turns a
multipart upload into a validated scan on disk, :mod:`.metrics` writes the
Prometheus text, :mod:`.command` is the CLI.
"""
