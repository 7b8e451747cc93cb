"""Nodules: attenuation (solid, part-solid, ground-glass), margin (smooth, lobulated,
spiculated), the radiologists' malignancy ratings, and painting into the scan.

Diameters and the link between diameter and malignancy come from the real
annotations (stats.py). The mix of attenuation and margin types, and how much
margin and attenuation move the ratings, are not in those files; they are set
here from the usual radiology picture (most nodules are solid; spiculation and
lobulation, and a solid part inside ground glass, raise suspicion; all of
them grow more frequent with size) and centred so that, for every diameter,
the fraction of malignant nodules stays that of the real annotations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

from torchlite.data.synth import stats
from torchlite.data.synth.grid import Grid
from torchlite.data.synth.vessels import tube_fraction

KINDS = {"solid": 0.80, "part-solid": 0.08, "ground-glass": 0.12}
LOCATIONS = {"isolated": 0.55, "juxtapleural": 0.33, "juxtavascular": 0.12}
SHAPES = ("smooth", "lobulated", "spiculated")
# shifts of the malignancy log-odds, centred per diameter before use
SHAPE_SHIFT = {"smooth": -0.6, "lobulated": 0.4, "spiculated": 1.6}
KIND_SHIFT = {"solid": 0.0, "part-solid": 1.0, "ground-glass": -0.4}


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def shape_probabilities(diameter: float) -> np.ndarray:
    """P(smooth, lobulated, spiculated) for a nodule of this diameter (mm)."""
    spiculated = 0.06 + 0.30 * _sigmoid((diameter - 12.0) / 3.0)
    lobulated = 0.20 + 0.15 * _sigmoid((diameter - 8.0) / 3.0)
    return np.array([1.0 - spiculated - lobulated, lobulated, spiculated])


def malignancy_probability(diameter: float, shape: str, kind: str) -> float:
    """P(mal_bool): the real annotations' logistic curve in diameter, moved by margin and attenuation.

    The shifts are centred on their mean at this diameter, so averaged over
    shapes and kinds the curve stays the real one.
    """
    a, b = stats.MALIGNANCY_LOGIT
    centre = (shape_probabilities(diameter) @ np.array([SHAPE_SHIFT[k] for k in SHAPES])
              + np.array(list(KINDS.values())) @ np.array([KIND_SHIFT[k] for k in KINDS]))
    return float(_sigmoid(a + b * np.log(diameter) + SHAPE_SHIFT[shape] + KIND_SHIFT[kind] - centre))


def _rating_thresholds(diameter: float) -> np.ndarray:
    cdf = np.clip(np.cumsum(stats.rating_shares(diameter))[:-1], 1e-6, 1 - 1e-6)
    return np.array([NormalDist().inv_cdf(float(c)) for c in cdf])


def draw_ratings(rng: np.random.Generator, diameter: float, malignant: bool) -> tuple[int, ...]:
    """The readers' 1..5 ratings of a nodule, given whether it is malignant by the book's rule.

    Ordinal model: each reader's latent opinion is a shared nodule term plus
    their own (correlation stats.RATER_CORRELATION), cut at the real rating
    shares for this diameter; draws that disagree with `malignant` are
    rejected, so ratings and mal_bool always agree as in the book's file.
    """
    n = stats.sample_rater_count(rng, diameter)
    thresholds = _rating_thresholds(diameter)
    rho = stats.RATER_CORRELATION
    for _ in range(1000):
        shared = rng.standard_normal((256, 1))
        latent = rho * shared + np.sqrt(1 - rho * rho) * rng.standard_normal((256, n))
        ratings = 1 + np.searchsorted(thresholds, latent)
        ok = ((ratings >= stats.MALIGNANT_RATING).sum(1) >= stats.MALIGNANT_MIN_HIGH_RATINGS) == malignant
        if ok.any():
            return tuple(int(r) for r in ratings[np.argmax(ok)])
    raise AssertionError(f"no ratings found for a {diameter:.1f} mm nodule with malignant={malignant}")


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    return q * np.sign(np.diag(r))


def _directions(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@dataclass
class Nodule:
    """One nodule; geometry is relative to `center` (mm from the scan centre, see grid.py)."""

    diameter: float
    kind: str
    shape: str
    location: str
    ratings: tuple[int, ...]
    annotated: bool
    solid_hu: float
    ggo_hu: float
    calcified_hu: float | None
    rotation: np.ndarray
    axes: np.ndarray  # ellipsoid half-axes of the main body (mm)
    lobes: np.ndarray  # (k, 4): centre offset xyz, radius
    spicules: np.ndarray  # (m, 5): unit direction xyz, length, base radius
    core: np.ndarray  # (4,): solid core of a part-solid nodule, offset xyz and radius (radius 0: none)
    center: np.ndarray | None = None
    bbox_world: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    @property
    def radius(self) -> float:
        return self.diameter / 2.0

    @property
    def malignant(self) -> bool:
        return bool(self.ratings) and stats.malignant(self.ratings)

    @property
    def reach(self) -> float:
        """Farthest extent from the centre (mm), spicules included."""
        r = float(self.axes.max())
        if len(self.lobes):
            r = max(r, float(np.max(np.linalg.norm(self.lobes[:, :3], axis=1) + self.lobes[:, 3])))
        if len(self.spicules):
            r = max(r, float(self.spicules[:, 3].max()))
        return r


def draw_nodule(rng: np.random.Generator, diameter: float, annotated: bool = True) -> Nodule:
    """Type, margin, location, ratings and shape of a nodule of this diameter.

    Unannotated nodules are the sub-3 mm ones LUNA16 leaves out: solid, smooth,
    unrated; they appear only as class-0 candidates.
    """
    r = diameter / 2.0
    if annotated:
        kind = str(rng.choice(list(KINDS), p=list(KINDS.values())))
        shape = str(rng.choice(SHAPES, p=shape_probabilities(diameter)))
        location = str(rng.choice(list(LOCATIONS), p=list(LOCATIONS.values())))
        ratings = draw_ratings(rng, diameter, bool(rng.random() < malignancy_probability(diameter, shape, kind)))
    else:
        kind, shape, location, ratings = "solid", "smooth", "isolated", ()
    main = {"smooth": 1.0, "lobulated": 0.75, "spiculated": 0.9}[shape] * r
    stretch = rng.uniform([1.0, 0.9], [1.15, 1.0])
    axes = main * np.array([stretch[0], stretch[1], 1.0 / (stretch[0] * stretch[1])])
    lobes = np.zeros((0, 4))
    if shape == "lobulated":
        k = int(rng.integers(3, 7))
        lobes = np.column_stack([_directions(rng, k) * main * rng.uniform(0.6, 0.85, (k, 1)),
                                 r * rng.uniform(0.35, 0.5, k)])
    spicules = np.zeros((0, 5))
    if shape == "spiculated":
        m = int(rng.integers(8, 20))
        spicules = np.column_stack([_directions(rng, m), r * rng.uniform(1.4, 2.6, m),
                                    np.maximum(r * rng.uniform(0.1, 0.18, m), 0.6)])
    core = np.zeros(4)
    if kind == "part-solid":
        core = np.append(_directions(rng, 1)[0] * r * rng.uniform(0.0, 0.2), r * rng.uniform(0.3, 0.6))
    solid_hu = float(rng.uniform(0.0, 60.0))
    ggo_hu = float(rng.uniform(-500.0, -300.0))
    calcified_hu = None
    # dense calcification marks a benign granuloma; only small smooth low-rated solid nodules get one
    if annotated and kind == "solid" and shape == "smooth" and np.mean(ratings) <= 2.0 and rng.random() < 0.4:
        calcified_hu = float(rng.uniform(250.0, 600.0))
    return Nodule(diameter=float(diameter), kind=kind, shape=shape, location=location, ratings=ratings,
                  annotated=annotated, solid_hu=solid_hu, ggo_hu=ggo_hu, calcified_hu=calcified_hu,
                  rotation=_rotation(rng), axes=axes, lobes=lobes, spicules=spicules, core=core)


def _sphere(X, Y, Z, c, radius, edge):
    d = np.sqrt((X - c[0]) ** 2 + (Y - c[1]) ** 2 + (Z - c[2]) ** 2)
    return np.clip((radius - d) / edge + 0.5, 0.0, 1.0)


def nodule_fraction(n: Nodule, X, Y, Z, edge: float) -> np.ndarray:
    """Fraction of each voxel inside the nodule; X, Y, Z are mm from the nodule centre."""
    R = n.rotation
    q = [R[0, k] * X + R[1, k] * Y + R[2, k] * Z for k in range(3)]  # coordinates in the nodule's own axes
    rho = np.sqrt(sum((qk / a) ** 2 for qk, a in zip(q, n.axes)))
    f = np.clip((1.0 - rho) * float(n.axes.mean()) / edge + 0.5, 0.0, 1.0)
    for lobe in n.lobes:
        f = np.maximum(f, _sphere(X, Y, Z, lobe[:3], lobe[3], edge))
    for sp in n.spicules:
        u, length, base = sp[:3], sp[3], sp[4]
        f = np.maximum(f, tube_fraction(X, Y, Z, 0.5 * n.radius * u, length * u, base, 0.3, edge))
    return f.astype(np.float32)


def nodule_target_hu(n: Nodule, X, Y, Z, edge: float) -> np.ndarray:
    """The HU each voxel of the nodule tends to (before blending with what lies beneath)."""
    if n.kind == "ground-glass":
        target = np.float32(n.ggo_hu)
    elif n.kind == "part-solid":
        fc = _sphere(X, Y, Z, n.core[:3], n.core[3], edge)
        target = n.ggo_hu + fc * (n.solid_hu - n.ggo_hu)
    else:
        target = np.float32(n.solid_hu)
    if n.calcified_hu is not None:
        fcal = _sphere(X, Y, Z, np.zeros(3), 0.45 * n.radius, edge)
        target = target + fcal * (n.calcified_hu - target)
    return target


def paint_nodule(hu: np.ndarray, grid: Grid, n: Nodule) -> None:
    """Raise `hu` toward the nodule's HU (vessels stay visible through ground glass) and record its bbox.

    The bounding box (``bbox_world``: low and high XYZ in mm) spans the
    centres of the voxels the nodule touches, like the readers' outlines in the
    book's file (there: median 1.2 diameters across in-plane, 0.8 along z).
    """
    edge = 0.5 * float(np.mean(grid.voxel_mm))
    reach = n.reach + 2 * edge
    box = grid.box(n.center - reach, n.center + reach)
    X, Y, Z = grid.coords(box)
    X, Y, Z = X - np.float32(n.center[0]), Y - np.float32(n.center[1]), Z - np.float32(n.center[2])
    f = nodule_fraction(n, X, Y, Z, edge)
    target = nodule_target_hu(n, X, Y, Z, edge)
    region = hu[box]
    region += f * np.maximum(target - region, 0.0)
    inside = np.nonzero(f > 0.05)
    if inside[0].size == 0:  # smaller than a voxel: fall back to the centre voxel
        irc = np.floor(grid.to_irc(n.center) + 0.5).astype(np.int64)
        lo = hi = irc[0]
    else:
        start = np.array([s.start for s in box])
        lo = start + np.array([ix.min() for ix in inside])
        hi = start + np.array([ix.max() for ix in inside])
    corners = grid.geometry.irc_to_xyz(np.stack([lo, hi]))
    n.bbox_world = (corners.min(0), corners.max(0))
