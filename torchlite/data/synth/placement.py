"""Where nodules go: inside a lung, on the pleura, or against a vessel.

Candidate centres are tested against the voxel labels of the rendered
phantom, many at once: a centre is accepted when points on a sphere around it
fall where its location kind wants them (all in lung for an isolated nodule,
most for one on the pleura or on a vessel), the whole nodule fits inside the
scan, and it keeps clear of the nodules already placed. A nodule whose kind
finds no room falls back to the next kind, and is dropped (with a debug log)
only when none does.
"""

from __future__ import annotations

import logging

import numpy as np

from torchlite.data.synth.grid import Grid
from torchlite.data.synth.nodules import Nodule
from torchlite.data.synth.phantom import LUNGS
from torchlite.data.synth.vessels import Tubes

log = logging.getLogger(__name__)

FALLBACKS = {
    "isolated": ("isolated", "juxtapleural"),
    "juxtapleural": ("juxtapleural", "isolated"),
    "juxtavascular": ("juxtavascular", "isolated", "juxtapleural"),
}
BATCH = 256  # centres tried at once


def _fibonacci_sphere(n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * i / n)
    theta = np.pi * (1 + 5**0.5) * i
    return np.column_stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)])


SPHERE = _fibonacci_sphere(48)
AROUND = np.array([[x, y, z] for x in (-1, 0, 1) for y in (-1, 0, 1) for z in (-1, 0, 1) if (x, y, z) != (0, 0, 0)],
                  dtype=np.float64)
AROUND /= np.linalg.norm(AROUND, axis=1, keepdims=True)


class Placer:
    """Places nodules one by one in a scan whose labels and vessels are known."""

    def __init__(self, rng: np.random.Generator, grid: Grid, labels: np.ndarray, vessels: Tubes):
        self.rng, self.grid, self.labels, self.vessels = rng, grid, labels, vessels
        irc = grid.sample_voxels(rng, labels, LUNGS, 6000)
        self.lung_points = grid.irc_to_rel(irc + rng.uniform(-0.5, 0.5, irc.shape))
        self.placed: list[tuple[np.ndarray, float]] = []  # centre, reach
        self._pleura: np.ndarray | None = None

    def _lung(self, points: np.ndarray) -> np.ndarray:
        return np.isin(self.grid.label_at(self.labels, points.reshape(-1, 3)), LUNGS).reshape(points.shape[:-1])

    def _same_lung_fraction(self, centers: np.ndarray, radius: float) -> np.ndarray:
        """Per centre: fraction of sphere points (at `radius`) in the same lung as the centre."""
        pts = centers[:, None, :] + radius * SPHERE[None]
        lab = self.grid.label_at(self.labels, pts.reshape(-1, 3)).reshape(len(centers), -1)
        own = self.grid.label_at(self.labels, centers)
        return np.where(np.isin(own, LUNGS), (lab == own[:, None]).mean(1), 0.0)

    def _fits(self, centers: np.ndarray, reach: float) -> np.ndarray:
        """The whole nodule lies inside the array, and clear of placed nodules."""
        irc = self.grid.to_irc(centers)
        margin = reach / self.grid.voxel_mm + 1.0
        ok = np.all((irc >= margin) & (irc <= np.array(self.grid.shape) - 1 - margin), axis=1)
        for c, r in self.placed:
            ok &= np.linalg.norm(centers - c, axis=1) > reach + r + 2.0
        return ok

    def pleural_points(self) -> np.ndarray:
        """Lung points with non-lung tissue within 1.5 mm: the pleural surface."""
        if self._pleura is None:
            p = self.lung_points
            near = self._lung(p[:, None, :] + 1.5 * AROUND[None])
            self._pleura = p[~near.all(1)]
        return self._pleura

    def _pick(self, centers: np.ndarray, ok: np.ndarray) -> np.ndarray | None:
        idx = np.flatnonzero(ok)
        return centers[idx[0]].copy() if idx.size else None

    def _isolated(self, n: Nodule) -> np.ndarray | None:
        c = self.lung_points[self.rng.integers(0, len(self.lung_points), BATCH)]
        ok = self._fits(c, n.reach) & (self._same_lung_fraction(c, 1.1 * n.radius + 1.0) == 1.0)
        ok &= self._same_lung_fraction(c, 0.5 * n.radius) == 1.0
        return self._pick(c, ok)

    def _juxtapleural(self, n: Nodule) -> np.ndarray | None:
        pleura = self.pleural_points()
        if len(pleura) == 0:
            return None
        p = pleura[self.rng.integers(0, len(pleura), BATCH)]
        # inward normal: of 26 directions, the one with most lung along it
        steps = n.radius * np.array([0.5, 1.0, 1.5])
        probe = p[:, None, None, :] + AROUND[None, :, None, :] * steps[None, None, :, None]
        score = self._lung(probe).sum(2)
        inward = AROUND[np.argmax(score, axis=1)]
        c = p + 0.6 * n.radius * inward  # the nodule's flank rests on the pleura
        frac = self._same_lung_fraction(c, n.radius)
        ok = self._fits(c, n.reach) & (frac >= 0.6) & (frac < 1.0)
        return self._pick(c, ok)

    def _juxtavascular(self, n: Nodule) -> np.ndarray | None:
        q, r, axis = self.vessels.points(self.rng, BATCH, min_radius=0.6)
        if len(q) == 0:
            return None
        v = self.rng.standard_normal((len(q), 3))
        v -= (v * axis).sum(1, keepdims=True) * axis
        v /= np.linalg.norm(v, axis=1, keepdims=True) + 1e-12
        c = q + v * (r + 0.55 * n.radius)[:, None]  # the vessel runs into the nodule's edge
        ok = self._fits(c, n.reach) & (self._same_lung_fraction(c, n.radius) >= 0.85)
        return self._pick(c, ok)

    def place(self, n: Nodule) -> bool:
        for kind in FALLBACKS[n.location]:
            for _ in range(4):
                center = getattr(self, "_" + kind)(n)
                if center is not None:
                    n.center, n.location = center, kind
                    self.placed.append((center, n.reach))
                    return True
        log.debug("no room for a %.1f mm %s nodule; dropped", n.diameter, n.location)
        return False
