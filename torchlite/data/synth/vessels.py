"""Vessel and airway trees: branching tubes grown inside the lungs, and their painting.

Pulmonary vessels are the classifier's hard negatives: seen end-on in a slice,
a vessel is a bright round spot like a small nodule. Each lung gets an
arterial and a venous tree from its hilum; the airway tree starts at the
trachea and splits at the carina. Radii follow Murray's law (r^3 = r1^3 + r2^3)
with asymmetric splits; a branch stops when it would leave its lung or gets
thinner than the scanner resolves.

Tubes are painted segment by segment, each in its own small bounding box,
with a partial-volume edge one voxel wide.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from torchlite.data.synth.grid import Grid
from torchlite.data.synth.phantom import LUNG_LEFT, LUNG_RIGHT, Anatomy


@dataclass
class Tubes:
    """N tube segments: start a, end b (mm from the centre), radius r0 at a, r1 at b."""

    a: np.ndarray
    b: np.ndarray
    r0: np.ndarray
    r1: np.ndarray

    @classmethod
    def empty(cls) -> "Tubes":
        z = np.zeros((0, 3))
        return cls(z, z.copy(), np.zeros(0), np.zeros(0))

    @classmethod
    def concat(cls, parts: list["Tubes"]) -> "Tubes":
        parts = [p for p in parts if len(p)] or [cls.empty()]
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("a", "b", "r0", "r1")))

    def __len__(self) -> int:
        return len(self.r0)

    def points(self, rng: np.random.Generator, n: int, min_radius: float = 0.0):
        """`n` random points on the centre lines (weighted by length), with the local radius and axis."""
        keep = np.flatnonzero(np.minimum(self.r0, self.r1) >= min_radius)
        if keep.size == 0 or n <= 0:
            return np.zeros((0, 3)), np.zeros(0), np.zeros((0, 3))
        length = np.linalg.norm(self.b[keep] - self.a[keep], axis=1) + 1e-9
        seg = keep[rng.choice(keep.size, size=n, p=length / length.sum())]
        t = rng.random(n)[:, None]
        axis = self.b[seg] - self.a[seg]
        axis /= np.linalg.norm(axis, axis=1, keepdims=True) + 1e-12
        radius = self.r0[seg] + t[:, 0] * (self.r1[seg] - self.r0[seg])
        return self.a[seg] + t * (self.b[seg] - self.a[seg]), radius, axis


def _unit(v: np.ndarray) -> np.ndarray:
    return v / (np.linalg.norm(v) + 1e-12)


def _perpendicular(rng: np.random.Generator, d: np.ndarray) -> np.ndarray:
    v = rng.standard_normal(3)
    return _unit(v - np.dot(v, d) * d)


def grow(rng, roots, inside, r_min: float, max_segments: int, length_factor=(7.0, 12.0)) -> Tubes:
    """Grow trees breadth-first from `roots` = [(start, direction, radius)].

    `inside(points) -> bool` says where a branch may go; breadth-first order
    means the segment cap trims the thinnest twigs first.
    """
    a, b, r0, r1 = [], [], [], []
    queue = deque((np.asarray(p, float), _unit(np.asarray(d, float)), float(r), np.asarray(p, float))
                  for p, d, r in roots)
    while queue and len(r0) < max_segments:
        p, d, r, root = queue.popleft()
        length = max(r * rng.uniform(*length_factor), 2.0)
        samples = p + np.outer([0.25, 0.5, 0.75, 1.0], d * length)
        ok = inside(samples)
        for _ in range(4):  # near the pleura a branch turns rather than stops
            if ok.all():
                break
            d_try = _unit(d + 0.9 * rng.standard_normal(3))
            s_try = p + np.outer([0.25, 0.5, 0.75, 1.0], d_try * length)
            ok_try = inside(s_try)
            if ok_try.sum() > ok.sum():
                d, samples, ok = d_try, s_try, ok_try
        end_radius = 0.93 * r
        if not ok.all():
            n_ok = int(np.argmin(ok)) if ok[0] else 0  # samples before the first outside one
            if n_ok:
                a.append(p), b.append(samples[n_ok - 1]), r0.append(r), r1.append(end_radius)
            continue
        e = samples[-1]
        a.append(p), b.append(e), r0.append(r), r1.append(end_radius)
        ratio = rng.uniform(0.55, 1.0)  # second branch / first branch radius
        big = end_radius / (1.0 + ratio**3) ** (1.0 / 3.0)
        small = ratio * big
        if small < r_min:
            continue
        n = _perpendicular(rng, d)
        # the thinner branch turns harder (flow-optimal bifurcations)
        th_big = np.radians(rng.uniform(12, 30))
        th_small = np.radians(rng.uniform(30, 60)) * (1.2 - 0.4 * ratio)
        # a pull away from the root spreads the tree through the lung instead of curling back
        outward = 0.35 * _unit(e - root)
        for theta, sign, radius in ((th_big, 1.0, big), (th_small, -1.0, small)):
            child = np.cos(theta) * d + sign * np.sin(theta) * n + outward + 0.15 * rng.standard_normal(3)
            queue.append((e, _unit(child), radius, root))
    if not r0:
        return Tubes.empty()
    return Tubes(np.array(a), np.array(b), np.array(r0), np.array(r1))


def _lobar_roots(rng, hilum: np.ndarray, side: int, radius: float):
    """Lobar and segmental trunks fanning out from a hilum: up, down, lateral, front, back."""
    fan = [(0, 0, 1), (0.3 * side, 0, 1), (0, 0, -1), (side, 0, 0.2), (0.5 * side, -1, -0.4), (0.5 * side, 1, -0.4),
           (side, 0.3, -0.8), (0.2 * side, 0.8, -1)]  # the lower lobe is the largest: more trunks go down
    return [(hilum, _unit(np.array(f, float) + 0.25 * rng.standard_normal(3)), radius * rng.uniform(0.65, 0.85))
            for f in fan]


def _in_lung(grid: Grid, labels: np.ndarray, label: int):
    return lambda pts: grid.label_at(labels, pts) == label


def _hilum(anatomy: Anatomy, side: int, grid: Grid, labels: np.ndarray, label: int) -> np.ndarray:
    """A point on the medial side of the lung, a little above mid-height, inside the lung."""
    cx, cy = anatomy.lung_center(side)
    lx = anatomy.lung_half_axes(side)[0]
    z = anatomy.z_base + 0.5 * (anatomy.z_apex - anatomy.z_base)
    offset = np.array([anatomy.bx, anatomy.by, 0.0])
    for k in np.linspace(0.6, 0.0, 13):  # walk laterally until inside the lung
        p = np.array([cx - side * k * lx, cy, z]) + offset
        if grid.label_at(labels, p[None])[0] == label:
            return p
    return np.array([cx, cy, z]) + offset


def vessel_trees(rng, anatomy: Anatomy, grid: Grid, labels: np.ndarray, r_min: float, cap: int) -> Tubes:
    """Arterial and venous trees of both lungs."""
    parts = []
    for side, label in ((-1, LUNG_RIGHT), (+1, LUNG_LEFT)):
        hilum = _hilum(anatomy, side, grid, labels, label)
        r_lobar = 0.032 * anatomy.cax  # lobar arteries ~9 mm across in an adult chest
        roots = []
        for shift in (np.array([0.0, -3.0, 3.0]), np.array([0.0, 4.0, -4.0])):  # artery, vein
            roots += _lobar_roots(rng, hilum + shift * anatomy.cax / 140.0, side, r_lobar)
        parts.append(grow(rng, roots, _in_lung(grid, labels, label), r_min, cap))
    return Tubes.concat(parts)


def airway_tree(rng, anatomy: Anatomy, grid: Grid, labels: np.ndarray, r_min: float, cap: int) -> Tubes:
    """Trachea from the top of the scan to the carina, main bronchi to the hila, then bronchi in each lung."""
    offset = np.array([anatomy.bx, anatomy.by, 0.0])
    r_trachea = 0.06 * anatomy.cax
    top = np.array([0.0, 0.25 * anatomy.cay, grid.extent_mm(2) / 2 + 2.0]) + offset
    carina = np.array([0.0, 0.22 * anatomy.cay, anatomy.z_base + 0.66 * (anatomy.z_apex - anatomy.z_base)]) + offset
    a, b, r0, r1 = [top], [carina], [r_trachea], [r_trachea]
    parts = []
    for side, label in ((-1, LUNG_RIGHT), (+1, LUNG_LEFT)):
        hilum = _hilum(anatomy, side, grid, labels, label) + np.array([0.0, -2.0, 4.0]) * anatomy.cax / 140.0
        r_main = r_trachea * (0.72 if side < 0 else 0.66)
        a.append(carina), b.append(hilum), r0.append(r_main), r1.append(0.9 * r_main)
        parts.append(grow(rng, _lobar_roots(rng, hilum, side, 0.85 * r_main), _in_lung(grid, labels, label),
                          r_min, cap, length_factor=(4.0, 7.0)))
    trunk = Tubes(np.array(a), np.array(b), np.array(r0), np.array(r1))
    return Tubes.concat([trunk] + parts)


def tube_fraction(X, Y, Z, a, b, r0, r1, edge: float) -> np.ndarray:
    """Fraction of each voxel at (X, Y, Z) inside the tapered tube a->b (partial volume over `edge` mm)."""
    ab = b - a
    ab2 = float(ab @ ab) + 1e-12
    px, py, pz = X - a[0], Y - a[1], Z - a[2]
    t = np.clip((px * ab[0] + py * ab[1] + pz * ab[2]) / ab2, 0.0, 1.0)
    dx, dy, dz = px - t * ab[0], py - t * ab[1], pz - t * ab[2]
    dist = np.sqrt(dx * dx + dy * dy + dz * dz)
    radius = r0 + t * (r1 - r0)
    return np.clip((radius - dist) / edge + 0.5, 0.0, 1.0).astype(np.float32)


def paint_tubes(hu: np.ndarray, grid: Grid, tubes: Tubes, value: float, *, grow_by=0.0,
                labels: np.ndarray | None = None, within=None) -> None:
    """Blend `value` into `hu` along the tubes (radius + `grow_by`), optionally only where labels are in `within`."""
    edge = float(np.mean(grid.voxel_mm))
    within_arr = None if within is None else np.asarray(within, dtype=np.uint8)
    for a, b, r0, r1 in zip(tubes.a, tubes.b, tubes.r0 + grow_by, tubes.r1 + grow_by):
        reach = max(r0, r1) + edge
        box = grid.box(np.minimum(a, b) - reach, np.maximum(a, b) + reach)
        if box is None:
            continue
        f = tube_fraction(*grid.coords(box), a, b, r0, r1, edge)
        if within_arr is not None:
            f *= np.isin(labels[box], within_arr)
        region = hu[box]
        region += f * (value - region)
