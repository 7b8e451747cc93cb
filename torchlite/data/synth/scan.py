"""One synthetic scan, from its seed to an int16 volume and its nodule and candidate lists.

A scan depends only on (dataset seed, scan index, size): generating 5 scans
gives the first 5 of a 20-scan dataset, byte for byte. Its random stream is
``SeedSequence([seed, index, stream])``; the series UID has a stream of its
own so a dataset can make UIDs unique before drawing any voxel.

The first scans are pinned so that even a 4-scan dataset has what readers
must cope with: scan 1 has its z axis flipped, scan 2 its x and y axes (both
with nodules, so their coordinates can be checked), scan 3 has no nodule and
scan 0 always has some.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from torchlite.data.synth import candidates, stats
from torchlite.data.synth.grid import DIRECTION_PROBS, Grid, ScanSpec, draw_spec, series_uid
from torchlite.data.synth.nodules import Nodule, draw_nodule, paint_nodule
from torchlite.data.synth.phantom import LUNGS, SLAB, Anatomy
from torchlite.data.synth.placement import Placer
from torchlite.data.synth.vessels import airway_tree, paint_tubes, vessel_trees

log = logging.getLogger(__name__)

SIZES = ("small", "full")
_SCAN_STREAM, _UID_STREAM = 1, 2
PINNED_DIRECTIONS = {1: "flip_z", 2: "flip_xy"}
PINNED_NODULES = {0: True, 1: True, 2: True, 3: False}
MAX_NODULES = {"small": 5, "full": 12}  # the lungs of a small (zoomed) scan hold fewer
VESSEL_SEGMENTS = {"small": 700, "full": 2500}  # per lung; the thinnest twigs go first
AIRWAY_SEGMENTS = {"small": 80, "full": 300}
HU_MIN, HU_MAX = -1024, 3071  # the usual 12-bit CT range


@dataclass
class SynthScan:
    spec: ScanSpec
    volume: np.ndarray  # int16 (I, R, C)
    nodules: list[Nodule]  # annotated (>= 3 mm), placed
    nodules_xyz: np.ndarray  # (len(nodules), 3) their centres, world mm
    small_nodules: list[Nodule]  # unannotated (< 3 mm), placed
    candidates_xyz: np.ndarray  # (N, 3) world mm
    candidates_class: np.ndarray  # (N,) int64


def scan_uid(seed: int, index: int, attempt: int = 0) -> str:
    return series_uid(np.random.default_rng(np.random.SeedSequence([seed, index, _UID_STREAM, attempt])))


def generate_scan(seed: int, index: int, size: str, uid: str) -> SynthScan:
    if size not in SIZES:
        raise ValueError(f"`size` must be one of {SIZES}, got {size!r}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, index, _SCAN_STREAM]))
    kind = PINNED_DIRECTIONS.get(index) or str(rng.choice(list(DIRECTION_PROBS), p=list(DIRECTION_PROBS.values())))
    has_nodules = rng.random() >= stats.FRACTION_SCANS_WITHOUT_NODULES
    has_nodules = PINNED_NODULES.get(index, has_nodules)
    spec = draw_spec(rng, uid, size, kind)
    grid = Grid(spec)
    anatomy = Anatomy.draw(rng, grid)
    hu, labels = anatomy.render(grid, rng)

    r_min = 0.5 * float(grid.voxel_mm[1:].min())  # thinner than a voxel: the scanner cannot show it
    vessels = vessel_trees(rng, anatomy, grid, labels, r_min, VESSEL_SEGMENTS[size])
    airways = airway_tree(rng, anatomy, grid, labels, max(1.5 * r_min, 0.8), AIRWAY_SEGMENTS[size])
    paint_tubes(hu, grid, vessels, 45.0, labels=labels, within=LUNGS)
    paint_tubes(hu, grid, airways, 35.0, grow_by=max(0.6, r_min))  # wall
    paint_tubes(hu, grid, airways, -1000.0)  # lumen

    count = stats.sample_nodule_count(rng, MAX_NODULES[size]) if has_nodules else 0
    annotated = [draw_nodule(rng, d) for d in stats.sample_diameters(rng, count)]
    small = [draw_nodule(rng, d, annotated=False) for d in rng.uniform(1.5, 2.9, rng.integers(0, 4))]
    placer = Placer(rng, grid, labels, vessels)
    order = sorted(annotated, key=lambda n: -n.diameter) + small  # big ones need the room
    placed = {id(n) for n in order if placer.place(n)}
    annotated = [n for n in annotated if id(n) in placed]
    small = [n for n in small if id(n) in placed]
    for n in annotated + small:
        paint_nodule(hu, grid, n)

    lung_volume = float(np.isin(labels, LUNGS).sum()) * grid.voxel_volume_mm3
    pos = candidates.positives(rng, annotated)
    neg = candidates.negatives(rng, candidates.negative_count(rng, lung_volume), grid, labels, placer,
                               vessels, airways, annotated, small)
    xyz = grid.to_world(np.concatenate([pos, neg]))
    cls = np.concatenate([np.ones(len(pos), np.int64), np.zeros(len(neg), np.int64)])
    order_c = rng.permutation(len(cls))  # detectors list candidates in no particular order

    volume = _finalize(rng, hu, grid, anatomy)
    log.debug("scan %d %s: %s %s, %d nodules, %d candidates", index, uid, spec.shape, kind, len(annotated), len(cls))
    nodules_xyz = grid.to_world(np.array([n.center for n in annotated]).reshape(-1, 3))
    return SynthScan(spec, volume, annotated, nodules_xyz, small, xyz[order_c], cls[order_c])


def _finalize(rng: np.random.Generator, hu: np.ndarray, grid: Grid, anatomy: Anatomy) -> np.ndarray:
    """Scanner noise, the reconstruction circle's padding value (on some scans), int16."""
    sigma = np.float32(rng.uniform(8.0, 20.0))
    pad = int(rng.choice([-2048, -3024])) if rng.random() < 0.4 else None
    out = np.empty(grid.shape, dtype=np.int16)
    for i0 in range(0, grid.shape[0], SLAB):
        i1 = min(i0 + SLAB, grid.shape[0])
        h = hu[i0:i1]
        h += sigma * rng.standard_normal(h.shape, dtype=np.float32)
        np.clip(np.rint(h, out=h), HU_MIN, HU_MAX, out=h)
        if pad is not None:
            X, Y, _ = grid.coords((slice(i0, i1), slice(0, grid.shape[1]), slice(0, grid.shape[2])))
            outside = np.broadcast_to(X * X + Y * Y > anatomy.fov_radius**2, h.shape)
            h[outside] = pad
        out[i0:i1] = h
    return out
