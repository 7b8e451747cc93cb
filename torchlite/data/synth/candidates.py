"""The candidate list: what LUNA16's detectors proposed, positives and hard negatives.

LUNA16's candidates.csv (from several CAD systems) has ~620 candidates per
scan, 1.14 class-1 candidates per annotated nodule, each within the nodule
but off its centre, and the rest class 0: mostly vessels seen end-on, the
pleura, airway walls, parenchyma, small sub-3 mm nodules that no annotation
covers, and some tissue outside the lungs. This module draws the same mix.

Class-1 offsets stay within diameter/4 of the centre on every axis, so the
book's candidate/annotation matching finds the diameter; class-0 candidates
stay clear of every annotated nodule.
"""

from __future__ import annotations

import numpy as np

from torchlite.data.synth import stats
from torchlite.data.synth.grid import Grid
from torchlite.data.synth.nodules import Nodule
from torchlite.data.synth.phantom import BODY, BONE, LUNGS
from torchlite.data.synth.placement import Placer
from torchlite.data.synth.vessels import Tubes

NEGATIVE_SOURCES = {"vessel": 0.45, "pleura": 0.20, "lung": 0.15, "airway": 0.08, "body": 0.12}
# An adult's lungs at full inspiration hold about 5 L (an assumption: the
# shared files hold no volumes); negatives scale with the phantom's lung volume.
REAL_LUNG_VOLUME_MM3 = 5.0e6


def positives(rng: np.random.Generator, nodules: list[Nodule]) -> np.ndarray:
    """(N, 3) points (mm from the scan centre), one or two per annotated nodule, off-centre."""
    pts = []
    extra = stats.POSITIVE_CANDIDATES_PER_NODULE - 1.0
    for n in nodules:
        for _ in range(1 + int(rng.random() < extra)):
            off = np.clip(rng.normal(0.0, 0.08 * n.diameter, 3), -0.2 * n.diameter, 0.2 * n.diameter)
            pts.append(n.center + off)
    return np.array(pts).reshape(-1, 3)


def negative_count(rng: np.random.Generator, lung_volume_mm3: float) -> int:
    expected = stats.CANDIDATES_PER_SCAN * lung_volume_mm3 / REAL_LUNG_VOLUME_MM3
    return int(np.clip(rng.poisson(expected), 20, 2000))


def _from_source(rng, source: str, n: int, grid: Grid, labels, placer: Placer, vessels: Tubes, airways: Tubes):
    if source == "vessel":
        q, r, _ = vessels.points(rng, n, min_radius=0.5 * float(grid.voxel_mm.min()))
        return q + rng.normal(0.0, 0.3, q.shape) * r[:, None]
    if source == "airway":
        q, r, axis = airways.points(rng, n)
        v = rng.standard_normal(q.shape)
        v -= (v * axis).sum(1, keepdims=True) * axis
        v /= np.linalg.norm(v, axis=1, keepdims=True) + 1e-12
        return q + v * (r + 0.5)[:, None]  # on the wall
    if source == "pleura":
        p = placer.pleural_points()
        return p[rng.integers(0, len(p), n)] if len(p) else np.zeros((0, 3))
    wanted = LUNGS if source == "lung" else (BODY, BONE)
    irc = grid.sample_voxels(rng, labels, wanted, n)
    return grid.irc_to_rel(irc + rng.uniform(-0.5, 0.5, irc.shape))


def negatives(rng: np.random.Generator, n: int, grid: Grid, labels: np.ndarray, placer: Placer,
              vessels: Tubes, airways: Tubes, annotated: list[Nodule], small: list[Nodule]) -> np.ndarray:
    """(N, 3) class-0 points: every unannotated small nodule, then about `n` from the sources' mix."""
    centers = np.array([m.center for m in small]).reshape(-1, 3)
    out = [_clear(grid, centers + rng.normal(0.0, 0.3, centers.shape), annotated)]
    for source, k in zip(NEGATIVE_SOURCES, rng.multinomial(n, list(NEGATIVE_SOURCES.values()))):
        if k:  # oversample: some points fall outside the scan or too near a nodule
            pts = _from_source(rng, source, 3 * int(k), grid, labels, placer, vessels, airways)
            out.append(_clear(grid, pts, annotated)[: int(k)])
    return np.concatenate(out)


def _clear(grid: Grid, pts: np.ndarray, annotated: list[Nodule]) -> np.ndarray:
    """The points inside the scan and outside 1.5 radii (+1 mm) of every annotated nodule."""
    irc = np.floor(grid.to_irc(pts) + 0.5)
    keep = np.all((irc >= 0) & (irc < np.array(grid.shape)), axis=1)
    for a in annotated:
        keep &= np.linalg.norm(pts - a.center, axis=1) > 1.5 * a.radius + 1.0
    return pts[keep]
