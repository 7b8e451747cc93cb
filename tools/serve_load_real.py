"""`torchlite serve` under load with the real models: batching vs --max-batch 1.

    python tools/serve_load_real.py [--models runs/demo/models] [--data runs/demo/data]

32 concurrent clients (loopback) each send ROUNDS requests of one crop cut
from a scan of --data; every answer is checked against the models called
directly on the same crop (1e-4) and against its X-Request-Id. Prints
throughput and p50/p99 latency for each server setting. The CI load test
(benchmarks/test_serve_load.py) uses a stand-in model of fixed cost; this
is the same measurement with the trained models, on whatever machine runs it.
"""
import argparse
import asyncio
import glob
import io
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import torch

from torchlite.analysis.bundle import load_bundle
from torchlite.analysis.classify import positive_probability
from torchlite.data.scan import CtScan

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--models", default="runs/demo/models")
ap.add_argument("--data", default="runs/demo/data")
cli = ap.parse_args()
MODELS = cli.models
scan = CtScan(sorted(glob.glob(f"{cli.data}/subset*/*.mhd"))[0])
rng = np.random.default_rng(0)
D, H, W = scan.shape
N = 64
centers = np.stack([rng.integers(16, D - 16, N), rng.integers(40, H - 40, N), rng.integers(40, W - 40, N)], 1)
crops = scan.crop(centers, (32, 48, 48))  # (N,1,32,48,48)
b = load_bundle(MODELS)
want_n = positive_probability(b.cls, crops).numpy(); want_m = positive_probability(b.mal, crops).numpy()

def port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def body(i):
    f = io.BytesIO(); np.save(f, crops[i:i+1, 0].numpy()); return f.getvalue()

async def load(url, rounds):
    lat, bad = [], 0
    async with httpx.AsyncClient(timeout=600) as http:
        async def client(c):
            nonlocal bad
            for r in range(rounds):
                i = (c * rounds + r) % N
                t = time.perf_counter()
                resp = await http.post(url + "/v1/classify", content=body(i), headers={"X-Request-Id": f"{c}-{r}"})
                lat.append(time.perf_counter() - t)
                j = resp.json()
                if resp.status_code != 200 or j.get("request_id") != f"{c}-{r}" or abs(j["nodule"][0] - want_n[i]) > 1e-4 or abs(j["malignancy"][0] - want_m[i]) > 1e-4:
                    bad += 1
        t0 = time.perf_counter()
        await asyncio.gather(*(client(c) for c in range(32)))
        wall = time.perf_counter() - t0
    lat.sort()
    return {"requests": 32 * rounds, "req_s": 32 * rounds / wall, "p50": lat[len(lat)//2], "p99": lat[int(len(lat)*0.99)], "bad": bad}

for max_batch, rounds in ((64, 4), (1, 2)):
    p = port()
    srv = subprocess.Popen([sys.executable, "-m", "torchlite", "serve", "--models", MODELS, "--port", str(p), "--max-batch", str(max_batch)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{p}"
    for _ in range(120):
        try:
            if httpx.get(url + "/healthz").status_code == 200: break
        except Exception: time.sleep(0.5)
    r = asyncio.run(load(url, rounds))
    srv.terminate(); srv.wait(30)
    print(f"--max-batch {max_batch}: {r['requests']} requests, {r['req_s']:.2f} req/s, p50 {r['p50']:.2f} s, p99 {r['p99']:.2f} s, wrong/lost {r['bad']}", flush=True)
