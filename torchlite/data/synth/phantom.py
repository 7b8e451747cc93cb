"""The chest phantom: air, table, skin, fat, muscle, bone, mediastinum, two textured lungs.

Every structure is an analytic shape in patient millimetres (see grid.py),
evaluated slab by slab with numpy broadcasting, so a 300x512x512 scan needs a
few slab-sized temporaries rather than many whole-volume ones. Sizes scale
with the field of view, so a `small` scan is a zoomed reconstruction of the
same chest; vessels and nodules keep their real millimetre sizes.

HU values follow the usual CT numbers: air -1000, aerated lung about -850
(denser toward the back, where gravity pools blood), fat -100, muscle and
blood 40-60, cancellous bone ~250, cortical bone 700-900.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from torchlite.data.synth.grid import Grid

# voxel labels kept beside the HU volume (placement and candidates use them)
AIR, BODY, BONE, LUNG_RIGHT, LUNG_LEFT = 0, 1, 2, 3, 4
LUNGS = (LUNG_RIGHT, LUNG_LEFT)
SLAB = 16  # slices per rendering pass


class SmoothNoise:
    """Value noise: unit Gaussian values on a coarse lattice, smoothstep-interpolated.

    The lattice is upsampled in-plane once; each slab then blends two lattice
    planes, so any slab can be drawn in any order with the same result.
    """

    def __init__(self, rng: np.random.Generator, shape: tuple[int, int, int], cell_voxels):
        lattice_shape = [int(np.ceil((n - 1) / c)) + 2 for n, c in zip(shape, cell_voxels)]
        lattice = rng.standard_normal(lattice_shape, dtype=np.float32)
        self._w = [self._weights(n, c) for n, c in zip(shape, cell_voxels)]
        j1, t1 = self._w[1]
        j2, t2 = self._w[2]
        rows = lattice[:, j1, :] * (1 - t1)[None, :, None] + lattice[:, j1 + 1, :] * t1[None, :, None]
        self._planes = rows[:, :, j2] * (1 - t2)[None, None, :] + rows[:, :, j2 + 1] * t2[None, None, :]

    @staticmethod
    def _weights(n: int, cell: float):
        pos = np.arange(n, dtype=np.float64) / cell
        j = np.floor(pos).astype(np.int64)
        t = pos - j
        return j, (t * t * (3 - 2 * t)).astype(np.float32)

    def slab(self, i0: int, i1: int) -> np.ndarray:
        j, t = self._w[0]
        j, t = j[i0:i1], t[i0:i1, None, None]
        return self._planes[j] * (1 - t) + self._planes[j + 1] * t


def _ellipse(X, Y, cx, cy, ax, ay, p=2.0):
    """Normalized (super)elliptic radius: < 1 inside."""
    return (np.abs((X - cx) / ax) ** p + np.abs((Y - cy) / ay) ** p) ** (1.0 / p)


@dataclass
class Anatomy:
    """Shape parameters of one chest, in mm relative to the field-of-view centre."""

    ax: float  # body half-width (X)
    ay: float  # body half-depth (Y)
    bx: float  # body centre offset
    by: float
    fat: float  # subcutaneous fat thickness
    wall: float  # muscle + ribs between fat and pleura
    z_apex: float  # lung tops
    z_base: float  # costophrenic recesses (lowest lung)
    dome: tuple[float, float]  # diaphragm dome rise above z_base, right and left
    rib_pitch: float
    rib_phase: float
    table_gap: float
    fov_radius: float  # reconstruction circle; outside it the scanner writes padding

    @property
    def cax(self) -> float:  # thoracic cavity half-width
        return self.ax - self.fat - self.wall

    @property
    def cay(self) -> float:
        return self.ay - self.fat - self.wall

    @classmethod
    def draw(cls, rng: np.random.Generator, grid: Grid) -> "Anatomy":
        fov = min(grid.extent_mm(0), grid.extent_mm(1))
        lz = grid.extent_mm(2)
        ax = fov * rng.uniform(0.40, 0.46)
        ay = ax * rng.uniform(0.64, 0.72)
        height = lz * rng.uniform(0.74, 0.84)
        z_apex = lz / 2 - rng.uniform(0.02, 0.06) * lz
        rise = height * rng.uniform(0.22, 0.30)
        return cls(
            ax=ax, ay=ay,
            bx=fov * rng.uniform(-0.02, 0.02), by=fov * rng.uniform(-0.02, 0.02),
            fat=ay * rng.uniform(0.04, 0.10), wall=ay * rng.uniform(0.08, 0.11),
            z_apex=z_apex, z_base=z_apex - height,
            dome=(rise * rng.uniform(1.0, 1.15), rise * rng.uniform(0.85, 1.0)),  # right dome sits higher
            rib_pitch=ax * rng.uniform(0.17, 0.21), rib_phase=rng.uniform(0, 1),
            table_gap=rng.uniform(0.0, 0.03) * fov,
            fov_radius=fov / 2 * rng.uniform(1.0, 1.02),
        )

    # --- organs, as functions of broadcast X, Y, Z (body-centred) -------------
    def lung_center(self, side: int) -> tuple[float, float]:
        """side -1 = right lung (patient's right is -X), +1 = left."""
        return side * 0.52 * self.cax, 0.04 * self.cay

    def lung_half_axes(self, side: int) -> tuple[float, float]:
        return (0.41 if side < 0 else 0.39) * self.cax, 0.86 * self.cay

    def diaphragm(self, side: int, X, Y):
        """Height of the diaphragm under a lung: a dome, highest at the lung's centre."""
        cx, cy = self.lung_center(side)
        lx, ly = self.lung_half_axes(side)
        r2 = ((X - cx) / lx) ** 2 + ((Y - cy) / ly) ** 2
        return self.z_base + self.dome[0 if side < 0 else 1] * np.clip(1.0 - r2, 0.0, 1.0)

    def heart(self, X, Y, Z):
        zc = self.z_base + 0.9 * self.dome[1] + 0.06 * (self.z_apex - self.z_base)
        hz = 0.22 * (self.z_apex - self.z_base)
        return np.sqrt(((X - 0.12 * self.cax) / (0.44 * self.cax)) ** 2
                       + ((Y + 0.30 * self.cay) / (0.50 * self.cay)) ** 2 + ((Z - zc) / hz) ** 2)

    def aorta(self, X, Y):
        return np.hypot(X - 0.18 * self.cax, Y - 0.48 * self.cay) / (0.085 * self.cax)

    def vertebra(self):
        rv = 0.09 * self.cax
        return 0.70 * self.cay, rv  # centre y and radius of the vertebral body

    def lung(self, side: int, X, Y, Z, heart_r=None):
        """Boolean mask of one lung (`heart_r`: self.heart(X, Y, Z) if already computed)."""
        cx, cy = self.lung_center(side)
        lx, ly = self.lung_half_axes(side)
        zmid = self.z_apex - 0.35 * (self.z_apex - self.z_base)
        t = np.clip((Z - zmid) / (self.z_apex - zmid), 0.0, 1.0)
        taper = np.sqrt(np.maximum(1.0 - t * t, 1e-6))  # the apex narrows to a dome
        # the cross-section scaled by taper: ellipse(X, Y) < taper, with the power taken in-plane only
        inside = _ellipse(X, Y, cx, cy, lx, ly, p=2.4) < taper
        inside &= Z <= self.z_apex
        inside &= Z >= self.diaphragm(side, X, Y)
        yv, rv = self.vertebra()
        outside_mediastinum = _ellipse(X, Y, 0.0, 0.0, self.cax, self.cay) < 1.0
        outside_mediastinum &= np.hypot(X, Y - yv) > rv + 0.06 * self.cax
        outside_mediastinum &= ~((np.abs(X) < 1.3 * rv) & (Y > yv))
        outside_mediastinum &= self.aorta(X, Y) > 1.25
        inside &= outside_mediastinum
        inside &= (self.heart(X, Y, Z) if heart_r is None else heart_r) > 1.12
        return inside

    # --- rendering ------------------------------------------------------------
    def render(self, grid: Grid, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """HU volume (float32) and labels (uint8) of the phantom, without vessels or nodules."""
        cell = np.maximum(np.round(5.0 / grid.voxel_mm), 1.0)  # ~5 mm texture grain
        noise = SmoothNoise(rng, grid.shape, cell)
        hu = np.empty(grid.shape, dtype=np.float32)
        labels = np.empty(grid.shape, dtype=np.uint8)
        for i0 in range(0, grid.shape[0], SLAB):
            i1 = min(i0 + SLAB, grid.shape[0])
            box = (slice(i0, i1), slice(0, grid.shape[1]), slice(0, grid.shape[2]))
            X, Y, Z = grid.coords(box)
            self._render_box(X - self.bx, Y - self.by, Z, noise.slab(i0, i1), hu[i0:i1], labels[i0:i1])
        return hu, labels

    def _render_box(self, X, Y, Z, tex, hu, lab):
        """Fill the views `hu` and `lab` of one slab."""
        hu.fill(-1000.0)
        lab.fill(AIR)

        def put(value, where, label=None):
            np.copyto(hu, value, where=where, casting="unsafe")
            if label is not None:
                np.copyto(lab, label, where=where)

        # patient table under the back: a carbon-fibre plate
        ty = self.ay + self.table_gap
        put(120.0, (Y > ty) & (Y < ty + 0.02 * self.ax + 3.0) & (np.abs(X) < 1.15 * self.ax))
        put(20.0 + 5 * tex, _ellipse(X, Y, 0.0, 0.0, self.ax, self.ay, p=2.2) < 1.0, BODY)  # skin
        put(-100.0 + 12 * tex, _ellipse(X, Y, 0.0, 0.0, self.ax - 1.5, self.ay - 1.5, p=2.2) < 1.0)
        put(48.0 + 8 * tex, _ellipse(X, Y, 0.0, 0.0, self.ax - self.fat, self.ay - self.fat, p=2.2) < 1.0)

        cavity = _ellipse(X, Y, 0.0, 0.0, self.cax, self.cay) < 1.0
        heart_r = self.heart(X, Y, Z)
        below = Z < np.minimum(self.diaphragm(-1, X, Y), self.diaphragm(+1, X, Y))
        # mediastinum and abdomen: soft tissue with fat in the gaps
        put(35.0 - 135.0 * np.clip(0.5 + 0.5 * tex, 0.0, 1.0), cavity)
        put(np.where(X < 0.25 * self.cax, 58.0, 30.0) + 6 * tex, cavity & below)  # liver | spleen, bowel
        zs = self.z_base - 0.02 * (self.z_apex - self.z_base)
        stomach_air = (((X - 0.45 * self.cax) / (0.22 * self.cax)) ** 2
                       + ((Y + 0.15 * self.cay) / (0.30 * self.cay)) ** 2
                       + ((Z - zs) / (0.04 * (self.z_apex - self.z_base) + 2.0)) ** 2) < 1.0
        put(-1000.0, stomach_air & cavity & below)
        put(-95.0, heart_r < 1.12)  # epicardial fat
        put(42.0 + 4 * tex, heart_r < 1.0)
        put(42.0, (self.aorta(X, Y) < 1.0) & (Z < self.z_apex))

        self._render_bones(X, Y, Z, put)

        for side, label in ((-1, LUNG_RIGHT), (+1, LUNG_LEFT)):
            cy = self.lung_center(side)[1]
            ly = self.lung_half_axes(side)[1]
            gravity = 35.0 * np.clip((Y - cy) / ly, -1.0, 1.0)  # dependent lung is denser
            put(-860.0 + gravity + 22.0 * tex, self.lung(side, X, Y, Z, heart_r), label)

    def _render_bones(self, X, Y, Z, put):
        def paint(mask, core, value_core, value_cortex):
            put(value_cortex, mask, BONE)
            put(value_core, mask & core)

        # vertebral body, disc every pitch; canal and posterior arch behind it
        yv, rv = self.vertebra()
        rr = np.hypot(X, Y - yv) / rv
        disc = np.abs(((Z / (1.05 * self.rib_pitch) + self.rib_phase) % 1.0) - 0.5) < 0.1
        vb = rr < 1.0
        paint(vb & ~disc, rr < 0.85, 260.0, 750.0)
        put(85.0, vb & disc)
        yc = yv + 1.45 * rv
        rc = np.hypot(X, Y - yc) / (0.5 * rv)
        arch = (rc > 1.0) & (rc < 1.7) & (Y > yv + 0.7 * rv)
        spinous = (np.abs(X) < 0.22 * rv) & (Y > yc) & (Y < yc + 1.6 * rv)
        paint(arch | spinous, np.zeros((1, 1, 1), bool), 0.0, 650.0)
        put(15.0, rc < 1.0)

        # ribs: a band just outside the pleura, sloping down toward the front
        rho = _ellipse(X, Y, 0.0, 0.0, self.cax, self.cay)
        radial = (rho - 1.01) / 0.05  # ribs ~5 % of the cavity radius thick
        anterior = np.clip((self.cay - Y) / (2 * self.cay), 0.0, 1.0)
        phase = ((Z + 1.2 * self.rib_pitch * anterior) / self.rib_pitch + self.rib_phase) % 1.0
        height = 0.38
        band = (phase < height) & (radial > 0.0) & (radial < 1.0)
        band &= (Z > self.z_base - 0.5 * self.rib_pitch) & (Z < self.z_apex + 0.2 * self.rib_pitch)
        cartilage = (np.abs(X) < 0.22 * self.cax) & (Y < 0)
        core = (np.abs(phase / height - 0.5) < 0.3) & (np.abs(radial - 0.5) < 0.3)
        paint(band & ~cartilage, core, 280.0, 820.0)
        put(130.0, band & cartilage)

        # sternum, in front of the heart
        st = _ellipse(X, Y, 0.0, -(self.cay + 0.45 * self.wall), 0.10 * self.cax, 0.28 * self.wall + 1.0)
        sternum = (st < 1.0) & (Z > self.z_base + 0.15 * (self.z_apex - self.z_base))
        paint(sternum, st < 0.7, 300.0, 700.0)
