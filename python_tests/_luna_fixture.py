"""Tiny LUNA16 folders for the dataset tests, with the truth they were built from.

Every scan is written by SimpleITK (``_ct_files.write_scan``) with its own
spacing, origin and direction (some with flipped or permuted axes); the CSV
coordinates of each nodule and candidate are computed by SimpleITK's own
``TransformIndexToPhysicalPoint`` from a chosen voxel, so a dataset must
recover exactly that voxel, and its crops must equal plain numpy indexing of
the array it was written from.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from _ct_files import DIRECTIONS, write_scan

SHAPE = (24, 40, 44)  # (I, R, C)
HU_RANGE = (-1200, 1500)  # beyond the [-1000, 1000] clip on both sides


@dataclass
class SeriesTruth:
    uid: str
    array: np.ndarray  # int16 (I, R, C) as written
    mhd: Path
    benign: list = field(default_factory=list)  # IRC voxels of benign nodules
    malignant: list = field(default_factory=list)
    negatives: list = field(default_factory=list)  # class-0 candidates

    @property
    def nodules(self) -> list:
        return self.benign + self.malignant


def uid_of(i: int) -> str:
    return f"1.2.826.0.1.3680043.{100 + i}"


def _xyz(mhd: Path, irc) -> tuple[float, float, float]:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(mhd))
    reader.ReadImageInformation()
    image = sitk.Image([1, 1, 1], sitk.sitkInt16)
    image.SetOrigin(reader.GetOrigin())
    image.SetSpacing(reader.GetSpacing())
    image.SetDirection(reader.GetDirection())
    return image.TransformIndexToPhysicalPoint([int(irc[2]), int(irc[1]), int(irc[0])])


def write_csvs(root: Path, series: list[SeriesTruth]) -> None:
    candidates, annotations, malignancy = [], [], []
    for s in series:
        for irc, mal in [(v, False) for v in s.benign] + [(v, True) for v in s.malignant]:
            x, y, z = _xyz(s.mhd, irc)
            candidates.append([s.uid, x, y, z, 1])
            annotations.append([s.uid, x, y, z, 6.0])
            malignancy.append([s.uid, x, y, z, 6.0, "True" if mal else "False"])
        for irc in s.negatives:
            x, y, z = _xyz(s.mhd, irc)
            candidates.append([s.uid, x, y, z, 0])
    for name, header, rows in (
        ("candidates.csv", ["seriesuid", "coordX", "coordY", "coordZ", "class"], candidates),
        ("annotations.csv", ["seriesuid", "coordX", "coordY", "coordZ", "diameter_mm"], annotations),
        (
            "annotations_with_malignancy.csv",
            ["seriesuid", "coordX", "coordY", "coordZ", "diameter_mm", "mal_bool"],
            malignancy,
        ),
    ):
        with open(root / name, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(rows)


def random_voxels(rng, n, shape=SHAPE, margin=0):
    return [tuple(int(rng.integers(margin, d - margin)) for d in shape) for _ in range(n)]


def make_luna(
    root: Path,
    n_series: int = 5,
    *,
    n_benign: int = 1,
    n_malignant: int = 1,
    n_negatives: int = 6,
    shape=SHAPE,
    seed: int = 0,
) -> list[SeriesTruth]:
    """``n_series`` random-valued scans across two subsets, with nodules and
    candidates at random voxels (edges included), and the three CSVs."""
    rng = np.random.default_rng(seed)
    kinds = list(DIRECTIONS)
    series = []
    for i in range(n_series):
        uid = uid_of(i)
        array = rng.integers(*HU_RANGE, size=shape).astype(np.int16)
        mhd = write_scan(
            root / f"subset{i % 2}" / f"{uid}.mhd",
            array,
            spacing=(0.7 + 0.1 * i, 0.75, 1.25 + 0.5 * (i % 3)),
            origin=(-30.0 + i, 12.5, -100.0 - 3 * i),
            direction=DIRECTIONS[kinds[i % len(kinds)]],
        )
        voxels = random_voxels(rng, n_benign + n_malignant + n_negatives, shape)
        # one candidate on a corner, so some patches hang over the scan's edge
        if n_negatives:
            voxels[-1] = (0, shape[1] - 1, 0)
        series.append(
            SeriesTruth(
                uid, array, mhd,
                benign=voxels[:n_benign],
                malignant=voxels[n_benign : n_benign + n_malignant],
                negatives=voxels[n_benign + n_malignant :],
            )
        )
    write_csvs(root, series)
    return series


def numpy_crop(array: np.ndarray, center, size, *, fill=-1000.0, clip=(-1000.0, 1000.0), clamp=False) -> np.ndarray:
    """The truth for a crop: pad the clipped array with `fill` and slice."""
    data = array.astype(np.float32)
    if clip is not None:
        data = np.clip(data, *clip)
    starts = []
    for c, s, d in zip(center, size, array.shape):
        start = int(c) - s // 2
        if clamp:  # the book's getRawCandidate shift
            start = min(max(start, 0), max(d - s, 0))
        starts.append(start)
    pad = max(max(size), 1)
    padded = np.pad(data, pad, constant_values=fill)
    return padded[tuple(slice(st + pad, st + pad + s) for st, s in zip(starts, size))]
