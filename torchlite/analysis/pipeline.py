"""One scan, end to end: segment -> group -> classify -> malignancy.

:func:`analyze_scan` is what ``torchlite analyze``, ``torchlite serve`` and
the parity tests of the C++ program call. Unlike the book's chapter 14, a
scan where segmentation finds nothing gets no detections (the book then
classifies every candidate of the dataset), and scans in no CSV can be
analyzed (the book looks every scan up in its candidate list).

By default (``AnalysisConfig.lung_region``) the U-Net sees only the box of
the scan holding the lungs (:mod:`torchlite.analysis.lung_region`, about a
third of a chest CT's voxels; the whole scan when no lungs are found); the
report records the box, and its search as the ``lung_region`` stage.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from torchlite.analysis.bundle import ModelBundle
from torchlite.analysis.classify import crop_candidates, positive_probability
from torchlite.analysis.grouping import group_voxels, nearest_voxel
from torchlite.analysis.lung_region import LungBox, lung_box
from torchlite.analysis.segment import segment_volume
from torchlite.data.scan import CtScan


@dataclass(frozen=True)
class AnalysisConfig:
    threshold: float = 0.5  # segmentation probability above which a voxel is nodule
    erosion: int = 1  # binary erosions before grouping (the book's one)
    seg_batch_size: int | None = None  # slices per U-Net call (None: default_seg_batch_size of the device)
    cls_batch_size: int | None = None  # crops per classifier call (None: default_cls_batch_size of the device)
    progress: bool = False
    lung_region: bool = True  # segment only the box holding the lungs (False: every voxel, `--whole-scan`)

    def seg_batch_size_on(self, device: torch.device | str) -> int:
        """The slices per U-Net call used on ``device``: the configured count, else the device's default."""
        return self.seg_batch_size or default_seg_batch_size(device)

    def cls_batch_size_on(self, device: torch.device | str) -> int:
        """The crops per classifier (and malignancy) call on ``device``: the configured count, else the default."""
        return self.cls_batch_size or default_cls_batch_size(device)


def default_seg_batch_size(device: torch.device | str) -> int:
    """Slices per U-Net call: 1 on a CPU, 16 on a GPU.

    Measured on the 2-core CPU (whole analysis of a full-size synthetic scan, lung region, quiet):
    1 slice a call 5.7 s, 2: 9.1 s, 4: 13 s, 8: 16 s, 16: 17 s (segmenting is nearly all of it; the
    activations of one slice stay in the caches, a batch's do not); with another process burning a
    core, 24 s against 29 s. On a GPU a batch keeps the device busy.
    """
    return 1 if torch.device(device).type == "cpu" else 16


def default_cls_batch_size(device: torch.device | str) -> int:
    """Crops per classifier call: 8 on a CPU, 64 on a GPU.

    Measured on the 2-core CPU, 64 crops through the classifier (channels-last, freed memory kept):
    batches of 64 take 306 ms, of 8 190 ms (AOTInductor package: 484 ms against 227 ms). A batch of 64
    makes 150 MB activations, past what the allocator keeps (32 MB blocks), so each call faults in fresh
    pages; 8 crops' stay under it. On a GPU a batch keeps the device busy.
    """
    return 8 if torch.device(device).type == "cpu" else 64


@dataclass(frozen=True)
class ScanDetection:
    center_irc: tuple[float, float, float]  # weighted center of mass, voxel coordinates
    center_xyz: tuple[float, float, float]  # patient millimetres
    probability: float  # nodule probability (the classifier's)
    malignancy: float | None  # None without a malignancy model
    diameter_mm: float
    voxels: int

    def to_json(self) -> dict:
        return {"xyz": list(self.center_xyz), "irc": list(self.center_irc), "probability": self.probability,
                "malignancy": self.malignancy, "diameter_mm": self.diameter_mm, "voxels": self.voxels}


@dataclass
class ScanAnalysis:
    series_uid: str
    path: str
    shape: tuple[int, int, int]
    spacing_xyz: tuple[float, float, float]
    detections: list[ScanDetection]  # by decreasing nodule probability
    seconds: dict[str, float] = field(default_factory=dict)  # per stage, and "total"
    lung_region: LungBox | None = None  # the box segmented; None: every voxel (lung_region off)

    def to_json(self) -> dict:
        return {"series_uid": self.series_uid, "path": self.path, "shape": list(self.shape),
                "spacing_xyz": list(self.spacing_xyz), "seconds": self.seconds,
                "lung_region": None if self.lung_region is None else self.lung_region.to_json(),
                "detections": [d.to_json() for d in self.detections]}


class _Stopwatch:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._start = self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = round(now - self._last, 4)
        self._last = now

    def total(self) -> dict[str, float]:
        self.seconds["total"] = round(time.perf_counter() - self._start, 4)
        return self.seconds


def analyze_scan(scan: CtScan, bundle: ModelBundle, config: AnalysisConfig = AnalysisConfig()) -> ScanAnalysis:
    watch = _Stopwatch()
    volume = scan.open().tensor  # (D, H, W) int16, memory-mapped
    geometry = scan.geometry
    watch.lap("load")

    box = None
    if config.lung_region:
        box = lung_box(volume, geometry.spacing[::-1])
        watch.lap("lung_region")
    probability = segment_volume(volume, bundle.seg, batch_size=config.seg_batch_size_on(bundle.device),
                                 device=bundle.device, progress=config.progress, desc=f"segment {scan.series_uid[-12:]}", box=box)
    watch.lap("segment")

    groups = group_voxels(probability.numpy(), volume.numpy(), geometry.spacing[::-1], threshold=config.threshold,
                          erosion=config.erosion)
    watch.lap("group")

    detections: list[ScanDetection] = []
    if groups:
        centers = np.stack([g.center_irc for g in groups])
        crops = crop_candidates(volume, torch.from_numpy(nearest_voxel(centers)))
        nodule = positive_probability(bundle.cls, crops, batch_size=config.cls_batch_size_on(bundle.device),
                                       device=bundle.device)
        watch.lap("classify")
        malignant = (positive_probability(bundle.mal, crops, batch_size=config.cls_batch_size_on(bundle.device),
                                                   device=bundle.device)
                     if bundle.mal is not None else None)
        watch.lap("malignancy")
        xyz = geometry.irc_to_xyz(centers)
        for k, g in enumerate(groups):
            detections.append(ScanDetection(
                center_irc=tuple(float(v) for v in centers[k]), center_xyz=tuple(float(v) for v in xyz[k]),
                probability=float(nodule[k]), malignancy=None if malignant is None else float(malignant[k]),
                diameter_mm=round(g.diameter_mm, 3), voxels=g.voxels))
        detections.sort(key=lambda d: -d.probability)
    else:
        watch.lap("classify")
        watch.lap("malignancy")
    return ScanAnalysis(series_uid=scan.series_uid, path=str(scan.path), shape=tuple(volume.shape),
                        spacing_xyz=tuple(float(s) for s in geometry.spacing), detections=detections,
                        seconds=watch.total(), lung_region=box)
