"""`torchlite serve` against a real uvicorn server on a loopback port.

Truths: /v1/classify answers what the models give when called directly on
the same crops; /v1/analyze answers what ``analyze_scan`` gives on the same
file; batching is checked with a *marker* model whose probability encodes the
crop's center voxel, so a response holding another caller's (or another
crop's) result shows. Bad input of every kind gets its 4xx and the server
keeps answering.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import zipfile

import httpx
import numpy as np
import pytest
import SimpleITK as sitk
import torch
import torch.nn as nn
import uvicorn

from torchlite.analysis.bundle import ModelBundle, load_bundle
from torchlite.analysis.classify import positive_probability
from torchlite.analysis.pipeline import AnalysisConfig, analyze_scan
from torchlite.data.scan import CtScan
from torchlite.models import LunaModel, UNetWrapper
from torchlite.serve.app import ServeConfig, create_app

CROP = (32, 48, 48)


# ---------------------------------------------------------------- helpers


def _normalized(model: nn.Module) -> nn.Module:
    # Untrained models see raw HU through an input BatchNorm with unit
    # statistics and saturate to 0/1; statistics of CT-like input make their
    # probabilities vary, so a wrong crop-to-answer mapping shows.
    bn = next(m for m in model.modules() if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)))
    bn.running_mean.fill_(-500.0)
    bn.running_var.fill_(500.0 ** 2)
    return model


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    torch.save({"task": "seg", "model": _normalized(UNetWrapper()).state_dict(), "epoch": 3}, folder / "seg.pt")
    torch.save({"task": "cls", "model": _normalized(LunaModel()).state_dict(), "epoch": 5}, folder / "cls.pt")
    torch.save({"task": "mal", "model": _normalized(LunaModel()).state_dict(), "epoch": 7}, folder / "mal.pt")
    return folder


@pytest.fixture(scope="module")
def bundle(models_dir):
    return load_bundle(models_dir)


class Server:
    """uvicorn in a background thread on a free loopback port."""

    def __init__(self, app):
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                                    timeout_graceful_shutdown=30))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "Server":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture(scope="module")
def real(bundle, tmp_path_factory):
    """The service on the untrained (normalized) bundle; uploads go to a folder the tests inspect."""
    uploads = tmp_path_factory.mktemp("uploads")
    config = ServeConfig(max_batch=8, max_wait_ms=5, max_queue=64, max_upload_bytes=4 << 20,
                         max_scan_bytes=4 << 20, tmp_dir=str(uploads))
    with Server(create_app(bundle, config)) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        client.uploads = uploads
        yield client


class Marker(nn.Module):
    """P(class 1) = (center voxel + 1000) / 2000: each crop's answer tells which crop it was.

    ``gate``: a threading.Event the forward waits on (after setting ``entered``),
    to hold a batch in the model while the test does something else.
    """

    def __init__(self, invert=False, gate: threading.Event | None = None):
        super().__init__()
        self.invert, self.gate = invert, gate
        self.entered = threading.Event()
        self.batch_sizes: list[int] = []  # of the calls that succeeded
        self.calls: list[int] = []  # batch sizes of every call

    def forward(self, x):
        self.calls.append(x.shape[0])
        if (x == 999).any():  # the marker of a crop the model chokes on
            raise RuntimeError("model failure on marker 999")
        self.batch_sizes.append(x.shape[0])
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(30), "test never opened the gate"
        p = (x[:, 0, CROP[0] // 2, CROP[1] // 2, CROP[2] // 2] + 1000) / 2000
        p = 1 - p if self.invert else p
        probs = torch.stack([1 - p, p], dim=1)
        return probs.log(), probs


def _marker_bundle(gate=None) -> ModelBundle:
    return ModelBundle(seg=None, cls=Marker(gate=gate), mal=Marker(invert=True), device=torch.device("cpu"))


def _marked_crops(markers) -> np.ndarray:
    """Crops of -1000 HU whose center voxel is ``marker`` HU (a marker in [-1000, 1000])."""
    crops = np.full((len(markers), *CROP), -1000, dtype=np.float32)
    crops[:, CROP[0] // 2, CROP[1] // 2, CROP[2] // 2] = markers
    return crops


def _npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _classify(client, array, headers=None):
    return client.post("/v1/classify", content=_npy(array),
                       headers={"content-type": "application/x-npy", **(headers or {})})


def _write_phantom(folder, name="1.2.3.4.phantom", compressed=False):
    volume = np.full((32, 64, 64), -1000, np.int16)
    grid = np.indices(volume.shape)
    for center, radius in (((10, 20, 30), 4), ((22, 40, 15), 3)):
        volume[sum((g - c) ** 2 for g, c in zip(grid, center)) <= radius ** 2] = 100
    image = sitk.GetImageFromArray(volume)
    image.SetSpacing((0.7, 0.7, 2.5))
    image.SetOrigin((-20.0, 10.0, -300.0))
    path = folder / f"{name}.mhd"
    sitk.WriteImage(image, str(path), useCompression=compressed)
    return path


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    return _write_phantom(tmp_path_factory.mktemp("scan"))


def _scan_files(mhd):
    raw = mhd.with_suffix(".raw")
    return {"mhd": (mhd.name, mhd.read_bytes()), "raw": (raw.name, raw.read_bytes())}


def _assert_error(response, status, *words):
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == status
    for word in words:
        assert word.lower() in body["error"].lower(), body["error"]


# ---------------------------------------------------------------- endpoints


def test_health_models_and_metrics(real, models_dir):
    assert real.get("/healthz").json()["status"] == "ok"
    models = real.get("/v1/models").json()
    assert models["device"] == "cpu"
    assert {t: models["models"][t]["epoch"] for t in ("seg", "cls", "mal")} == {"seg": 3, "cls": 5, "mal": 7}
    assert models["models"]["cls"]["path"] == str(models_dir / "cls.pt")
    assert models["batching"] == {"max_batch": 8, "max_wait_ms": 5, "max_queue": 64}

    def healthz_count(text):
        line = [ln for ln in text.splitlines() if ln.startswith('torchlite_requests_total{method="GET",route="/healthz"')
                and 'status="200"' in ln]
        return float(line[0].split()[-1]) if line else 0.0

    before = real.get("/metrics")
    assert before.headers["content-type"].startswith("text/plain; version=0.0.4")
    for _ in range(3):
        real.get("/healthz")
    after = real.get("/metrics").text
    assert healthz_count(after) == healthz_count(before.text) + 3
    for name in ("torchlite_request_duration_seconds_bucket", "torchlite_queue_depth_crops",
                 "torchlite_batch_size_crops", "torchlite_requests_in_flight"):
        assert name in after


def test_classify_answers_what_the_models_say(real, bundle, phantom):
    from torchlite.analysis.classify import crop_candidates

    volume = CtScan(phantom).tensor
    centers = torch.tensor([[10, 20, 30], [22, 40, 15], [16, 32, 32], [0, 0, 0], [31, 63, 63]])
    crops = crop_candidates(volume, centers)  # (5, 1, 32, 48, 48) float32, as the analysis makes them
    rng = np.random.default_rng(1)
    noise = torch.from_numpy(rng.uniform(-1000, 1000, size=(3, 1, *CROP)).astype(np.float32))
    crops = torch.cat([crops, noise])
    want_nodule = positive_probability(bundle.cls, crops)
    want_mal = positive_probability(bundle.mal, crops)
    assert want_nodule.std() > 1e-3  # the models do tell these crops apart

    response = _classify(real, crops[:, 0].numpy(), headers={"x-request-id": "abc-1"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["n"] == 8 and body["request_id"] == "abc-1"
    np.testing.assert_allclose(body["nodule"], want_nodule.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(body["malignancy"], want_mal.numpy(), rtol=1e-4, atol=1e-6)

    # (N, 1, 32, 48, 48) is accepted too; int16 HU beyond [-1000, 1000] is clipped as crop3d clips.
    hu = (crops.numpy() * 1.5).round().astype(np.int16)
    response = _classify(real, hu)
    assert response.status_code == 200, response.text
    clipped = torch.from_numpy(hu.astype(np.float32)).clamp(-1000, 1000)
    np.testing.assert_allclose(response.json()["nodule"], positive_probability(bundle.cls, clipped).numpy(),
                               rtol=1e-4, atol=1e-6)


def test_classify_empty_request_is_an_empty_answer(real):
    response = _classify(real, np.zeros((0, *CROP), np.float32))
    assert response.status_code == 200
    assert response.json() == {"n": 0, "nodule": [], "malignancy": [], "request_id": None}


def test_concurrent_requests_share_batches_and_each_gets_its_own_answer():
    bundle = _marker_bundle()
    config = ServeConfig(max_batch=16, max_wait_ms=300, max_queue=256)
    n_clients = 8
    with Server(create_app(bundle, config)) as server:
        def call(k):
            markers = np.array([-900 + 100 * k, -850 + 100 * k], np.float32)  # distinct per client and crop
            with httpx.Client(base_url=server.url, timeout=30) as client:
                return markers, _classify(client, _marked_crops(markers), headers={"x-request-id": str(k)})

        with concurrent.futures.ThreadPoolExecutor(n_clients) as pool:
            results = list(pool.map(call, range(n_clients)))
    for k, (markers, response) in enumerate(results):
        body = response.json()
        assert body["request_id"] == str(k)
        np.testing.assert_allclose(body["nodule"], (markers + 1000) / 2000, atol=1e-6)
        np.testing.assert_allclose(body["malignancy"], 1 - (markers + 1000) / 2000, atol=1e-6)
    # 16 crops within a 300 ms window: far fewer model calls than requests.
    assert sum(bundle.cls.batch_sizes) == 2 * n_clients
    assert len(bundle.cls.batch_sizes) < n_clients


def test_a_model_error_fails_only_the_request_that_caused_it():
    bundle = _marker_bundle()
    with Server(create_app(bundle, ServeConfig(max_batch=4, max_wait_ms=2000))) as server:
        def call(markers):
            return _classify(httpx.Client(base_url=server.url, timeout=30), _marked_crops(markers))

        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            good1, bad, good2 = pool.map(call, ([10.0], [999.0, 20.0], [30.0]))
        _assert_error(bad, 500, "model failure on marker 999")
        assert good1.json()["nodule"] == pytest.approx([0.505]) and good2.json()["nodule"] == pytest.approx([0.515])
        assert httpx.get(server.url + "/healthz").status_code == 200
    assert bundle.cls.calls[0] == 4  # the three shared a batch (full at 4 crops), which failed, then ran alone


def test_a_request_larger_than_max_batch_is_split_and_reassembled_in_order():
    bundle = _marker_bundle()
    markers = np.linspace(-990, 990, 10).astype(np.float32)
    with Server(create_app(bundle, ServeConfig(max_batch=4, max_wait_ms=0))) as server:
        body = _classify(httpx.Client(base_url=server.url), _marked_crops(markers)).json()
    assert bundle.cls.batch_sizes == [4, 4, 2]
    np.testing.assert_allclose(body["nodule"], (markers + 1000) / 2000, atol=1e-6)


def test_a_full_queue_answers_503_with_retry_after_and_the_queued_work_still_runs():
    gate = threading.Event()
    bundle = _marker_bundle(gate)
    config = ServeConfig(max_batch=1, max_wait_ms=0, max_queue=1, retry_after_s=2)
    with Server(create_app(bundle, config)) as server, concurrent.futures.ThreadPoolExecutor(2) as pool:
        client = httpx.Client(base_url=server.url, timeout=30)
        first = pool.submit(_classify, httpx.Client(base_url=server.url, timeout=30), _marked_crops([100.0]))
        assert bundle.cls.entered.wait(10)  # the first crop is in the model, the queue is empty
        second = pool.submit(_classify, httpx.Client(base_url=server.url, timeout=30), _marked_crops([200.0]))
        deadline = time.monotonic() + 10
        while client.get("/healthz").json()["queue_depth_crops"] < 1:  # the second crop waits in the queue
            assert time.monotonic() < deadline
            time.sleep(0.01)
        refused = _classify(client, _marked_crops([300.0]))
        _assert_error(refused, 503, "queue full", "--max-queue 1")
        assert refused.headers["retry-after"] == "2"
        # A request that could never fit is a 413, not a 503 to retry forever.
        _assert_error(_classify(client, _marked_crops([1.0, 2.0])), 413, "--max-queue 1")
        gate.set()
        assert first.result().json()["nodule"] == pytest.approx([0.55])
        assert second.result().json()["nodule"] == pytest.approx([0.6])
        assert 'torchlite_queue_rejections_total{route="/v1/classify"} 1' in client.get("/metrics").text


def test_graceful_shutdown_finishes_the_request_in_flight():
    gate = threading.Event()
    bundle = _marker_bundle(gate)
    server = Server(create_app(bundle, ServeConfig(max_batch=4, max_wait_ms=0)))
    with server:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            slow = pool.submit(_classify, httpx.Client(base_url=server.url, timeout=30), _marked_crops([-500.0]))
            assert bundle.cls.entered.wait(10)
            server.server.should_exit = True  # what uvicorn's SIGINT/SIGTERM handler does
            time.sleep(0.3)
            with pytest.raises(httpx.ConnectError):  # no new connections while draining
                httpx.get(server.url + "/healthz", timeout=2)
            assert server.thread.is_alive()  # still waiting for the request in flight
            gate.set()
            response = slow.result(timeout=30)
        server.thread.join(30)
        assert not server.thread.is_alive()
    assert response.status_code == 200
    assert response.json()["nodule"] == pytest.approx([0.25])


# ---------------------------------------------------------------- analyze


def _analysis_truth(path, bundle):
    want = analyze_scan(CtScan(path), bundle, AnalysisConfig()).to_json()
    want.pop("seconds")
    want["path"] = path.name
    return want


def test_analyze_answers_what_analyze_scan_says(real, bundle, phantom, tmp_path):
    want = _analysis_truth(phantom, bundle)
    assert want["detections"], "the phantom should give the untrained U-Net something to find"

    response = real.post("/v1/analyze", files=_scan_files(phantom))
    assert response.status_code == 200, response.text
    got = response.json()
    assert set(got.pop("seconds")) >= {"segment", "classify", "total"}
    _same_analysis(got, want)

    # The same scan in a zip, inside a folder as archivers write it.
    archive = tmp_path / "scan.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(phantom, f"scans/{phantom.name}")
        zf.write(phantom.with_suffix(".raw"), f"scans/{phantom.with_suffix('.raw').name}")
    response = real.post("/v1/analyze", files={"scan": ("scan.zip", archive.read_bytes())})
    assert response.status_code == 200, response.text
    got = response.json()
    got.pop("seconds")
    _same_analysis(got, want)
    assert list(real.uploads.iterdir()) == []  # every upload folder removed


def test_analyze_reads_a_compressed_scan(real, bundle, tmp_path):
    path = _write_phantom(tmp_path, "1.2.3.zipped", compressed=True)
    want = _analysis_truth(path, bundle)
    data = path.with_suffix(".zraw")
    response = real.post("/v1/analyze", files={"mhd": (path.name, path.read_bytes()),
                                               "raw": (data.name, data.read_bytes())})
    assert response.status_code == 200, response.text
    got = response.json()
    got.pop("seconds")
    _same_analysis(got, want)


def _same_analysis(got, want):
    assert {k: v for k, v in got.items() if k != "detections"} == {k: v for k, v in want.items() if k != "detections"}
    assert len(got["detections"]) == len(want["detections"])
    for g, w in zip(got["detections"], want["detections"]):
        assert g["xyz"] == pytest.approx(w["xyz"]) and g["irc"] == pytest.approx(w["irc"])
        assert g["probability"] == pytest.approx(w["probability"], abs=1e-5)
        assert g["malignancy"] == pytest.approx(w["malignancy"], abs=1e-5)
        assert (g["voxels"], g["diameter_mm"]) == (w["voxels"], w["diameter_mm"])
    return True


# ---------------------------------------------------------------- bad input


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def test_bad_uploads_get_a_4xx_naming_the_problem_and_the_server_keeps_serving(real, phantom):
    mhd, raw = phantom.read_bytes(), phantom.with_suffix(".raw").read_bytes()
    post = real.post

    # not multipart, and multipart that is broken
    _assert_error(post("/v1/analyze", content=b"hello", headers={"content-type": "text/plain"}), 415, "multipart")
    _assert_error(post("/v1/analyze", content=b"--xyz\r\ngarbage",
                       headers={"content-type": "multipart/form-data; boundary=xyz"}), 400, "malformed multipart")
    _assert_error(post("/v1/analyze", content=b"--x\r\n", headers={"content-type": "multipart/form-data"}),
                  400, "boundary")
    # the pieces of a scan
    _assert_error(post("/v1/analyze", files={"mhd": (phantom.name, mhd)}), 400, "ElementDataFile",
                  "not uploaded")
    _assert_error(post("/v1/analyze", files={"mhd": (phantom.name, mhd), "raw": ("1.2.3.4.phantom.raw", raw[:-2])}),
                  400, "DimSize", "bytes")
    _assert_error(post("/v1/analyze", files={"raw": ("a.raw", raw)}), 400, "one .mhd")
    _assert_error(post("/v1/analyze", files={"mhd": ("x.mhd", os.urandom(300)), "raw": ("x.raw", raw)}),
                  400, "x.mhd")
    _assert_error(post("/v1/analyze", files={"mhd": ("x.mhd", b"NDims = 3\nDimSize = 64 64\n"
                                                              b"ElementSpacing = 1 1 1\nElementType = MET_SHORT\n"
                                                              b"ElementDataFile = x.raw\n"), "raw": ("x.raw", raw)}),
                  400, "DimSize", "expected 3 values")
    _assert_error(post("/v1/analyze", files={"mhd": ("notes.txt", b"hi")}), 400, "notes.txt")
    # a header must not read the server's own files
    evil = mhd.replace(b"ElementDataFile = 1.2.3.4.phantom.raw", b"ElementDataFile = /etc/passwd")
    _assert_error(post("/v1/analyze", files={"mhd": (phantom.name, evil), "raw": ("1.2.3.4.phantom.raw", raw)}),
                  400, "ElementDataFile", "not uploaded")
    # (a client's folders are dropped from its file names; what is left must be a plain name)
    _assert_error(post("/v1/analyze", files={"mhd": ("..", mhd)}), 400, "not a plain file name")
    _assert_error(post("/v1/analyze", files={"mhd": ("a;b.mhd", mhd)}), 400, "not a plain file name")
    # zips: path traversal, bombs, junk
    _assert_error(post("/v1/analyze", files={"scan": ("s.zip", _zip_bytes({"../evil.mhd": mhd, "evil.raw": raw}))}),
                  400, "leaves the archive")
    bomb = _zip_bytes({"bomb.mhd": mhd, "bomb.raw": bytes(5 << 20)})  # 5 MiB of zeros in a few KiB
    assert len(bomb) < 100_000
    _assert_error(post("/v1/analyze", files={"scan": ("bomb.zip", bomb)}), 413, "limit")
    _assert_error(post("/v1/analyze", files={"scan": ("s.zip", b"PK\x03\x04 not really")}), 400, "zip")
    # over the size limit (4 MiB here): by Content-Length, and while streaming without one
    _assert_error(post("/v1/analyze", files={"mhd": (phantom.name, mhd), "raw": ("big.raw", bytes(5 << 20))}),
                  413, "limit")

    def chunks():
        yield b"--b\r\nContent-Disposition: form-data; name=\"raw\"; filename=\"big.raw\"\r\n\r\n"
        for _ in range(80):
            yield bytes(64 << 10)

    _assert_error(post("/v1/analyze", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"}),
                  413, "limit")
    # routes and methods
    _assert_error(real.get("/v1/nothing"), 404, "/v1/nothing")
    _assert_error(real.get("/v1/classify"), 405, "GET")

    assert real.get("/healthz").json()["status"] == "ok"
    assert list(real.uploads.iterdir()) == []


def test_bad_crops_get_a_400_naming_the_problem(real):
    good = np.zeros((2, *CROP), np.float32)
    _assert_error(real.post("/v1/classify", content=b"[1, 2, 3]"), 400, ".npy")
    _assert_error(real.post("/v1/classify", content=_npy(good)[:200]), 400, "not a readable .npy")
    _assert_error(_classify(real, good.astype(np.float64)), 400, "float64", "float32 or int16")
    _assert_error(_classify(real, good.astype(np.uint8)), 400, "uint8")
    _assert_error(_classify(real, np.zeros((2, 32, 48, 47), np.float32)), 400, "(2, 32, 48, 47)", "(N, 32, 48, 48)")
    _assert_error(_classify(real, np.zeros((32, 48, 48), np.float32)), 400, "shape")
    _assert_error(_classify(real, np.array([{"a": 1}], dtype=object)), 400, "npy")
    nan = good.copy()
    nan[1, 0, 0, 0] = np.nan
    _assert_error(_classify(real, nan), 400, "NaN")
    _assert_error(_classify(real, np.zeros((20, *CROP), np.float32)), 413, "limit")  # 5.9 MB > 4 MiB
    assert real.get("/healthz").json()["status"] == "ok"


# ---------------------------------------------------------------- the command


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_command_serves_and_stops_cleanly_on_sigint(models_dir):
    port = _free_port()
    code = ("import argparse, sys\nfrom torchlite.serve import command\np = argparse.ArgumentParser()\n"
            "command.add_arguments(p)\nsys.exit(command.run(p.parse_args(sys.argv[1:])))")
    proc = subprocess.Popen([sys.executable, "-c", code, "--models", str(models_dir), "--port", str(port),
                             "--device", "cpu"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read().decode()
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.2)
        models = httpx.get(f"http://127.0.0.1:{port}/v1/models").json()
        assert models["models"]["cls"]["epoch"] == 5
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
