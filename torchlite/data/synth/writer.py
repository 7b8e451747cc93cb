"""Writing a LUNA16 folder: MetaImage scans and the three CSVs, each file atomically.

A scan is written by SimpleITK (uncompressed MET_SHORT, little-endian, with
its TransformMatrix) into a private temporary folder beside its subset, under
its final name, because the .mhd names its .raw; the .raw is then renamed
into place before the .mhd, so a reader that finds a .mhd finds its data.
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from torchlite.data.synth.grid import ScanSpec
from torchlite.data.synth.stats import malignant
from torchlite.utils.atomic import atomic_write

CANDIDATES_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "class")
ANNOTATIONS_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "diameter_mm")
MALIGNANCY_COLUMNS = (
    "seriesuid", "coordX", "coordY", "coordZ", "diameter_mm", "mal_bool", "mal_details",
    "bboxLowX", "bboxLowY", "bboxLowZ", "bboxHighX", "bboxHighY", "bboxHighZ", "len_mal_details",
)
CSV_FILES = {
    "candidates.csv": CANDIDATES_COLUMNS,
    "annotations.csv": ANNOTATIONS_COLUMNS,
    "annotations_with_malignancy.csv": MALIGNANCY_COLUMNS,
}


def write_scan(volume: np.ndarray, spec: ScanSpec, folder: str | os.PathLike) -> Path:
    """Write `volume` (int16, I x R x C) as ``folder/<uid>.mhd`` + ``.raw``; returns the .mhd path."""
    if volume.dtype != np.int16 or volume.shape != tuple(spec.shape):
        raise ValueError(f"scan {spec.uid}: volume must be int16 of shape {spec.shape}, "
                         f"got {volume.dtype} {volume.shape}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(volume)
    image.SetSpacing(spec.spacing)
    image.SetOrigin(spec.origin)
    image.SetDirection(spec.direction)
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.uid}.", suffix=".tmp", dir=folder))
    try:
        sitk.WriteImage(image, str(tmp / f"{spec.uid}.mhd"), useCompression=False)
        for suffix in (".raw", ".mhd"):
            staged = tmp / f"{spec.uid}{suffix}"
            with open(staged, "rb") as f:
                os.fsync(f.fileno())
            os.replace(staged, folder / staged.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder / f"{spec.uid}.mhd"


def _number(x: float) -> str:
    return f"{float(x):.10g}"


def candidate_rows(uid: str, xyz: np.ndarray, cls: np.ndarray) -> list[tuple]:
    return [(uid, *map(_number, p), int(c)) for p, c in zip(xyz, cls)]


def annotation_row(uid: str, xyz, diameter: float) -> tuple:
    return (uid, *map(_number, xyz), _number(diameter))


def malignancy_row(uid: str, xyz, diameter: float, ratings, bbox_low, bbox_high) -> tuple:
    """A row of the book's annotations_with_malignancy.csv: mal_bool as True/False, ratings as "[4, 2, 4]"."""
    return (uid, *map(_number, xyz), _number(diameter), str(malignant(ratings)), str(list(ratings)),
            *map(_number, bbox_low), *map(_number, bbox_high), len(ratings))


def write_csv(path: str | os.PathLike, columns: tuple[str, ...], rows) -> None:
    with atomic_write(path, "w") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(columns)
        w.writerows(rows)
