"""PNG views of a detection: axial, coronal and sagittal slices through its
center, with the detection circled, for a person to look at."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from torchlite.analysis.pipeline import ScanDetection
from torchlite.utils.atomic import atomic_write

# Lung window: what a radiologist would look at nodules with.
WINDOW_HU = (-1000.0, 400.0)
HALF_FIELD_MM = 60.0  # the view shows 120 mm around the detection


def _panel(ax, image: np.ndarray, center_rc: tuple[float, float], spacing_rc: tuple[float, float],
           radius_mm: float, title: str) -> None:
    import matplotlib.patches as patches

    rows, cols = image.shape
    r0 = max(0, int(center_rc[0] - HALF_FIELD_MM / spacing_rc[0]))
    r1 = min(rows, int(center_rc[0] + HALF_FIELD_MM / spacing_rc[0]) + 1)
    c0 = max(0, int(center_rc[1] - HALF_FIELD_MM / spacing_rc[1]))
    c1 = min(cols, int(center_rc[1] + HALF_FIELD_MM / spacing_rc[1]) + 1)
    # extent in millimetres, so anisotropic voxels show at their true shape
    extent = (c0 * spacing_rc[1], c1 * spacing_rc[1], r1 * spacing_rc[0], r0 * spacing_rc[0])
    ax.imshow(image[r0:r1, c0:c1], cmap="gray", vmin=WINDOW_HU[0], vmax=WINDOW_HU[1], extent=extent,
              interpolation="nearest")
    ax.add_patch(patches.Circle((center_rc[1] * spacing_rc[1], center_rc[0] * spacing_rc[0]), radius_mm * 1.5,
                                fill=False, edgecolor="yellow", linewidth=1.5))
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()


def write_detection_view(path: str | os.PathLike, volume: np.ndarray, spacing_xyz, detection: ScanDetection,
                         title: str) -> Path:
    """Three slices of (D, H, W) ``volume`` through ``detection``; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    i, r, c = (int(np.clip(np.floor(v + 0.5), 0, n - 1)) for v, n in zip(detection.center_irc, volume.shape))
    si, sr, sc = float(spacing_xyz[2]), float(spacing_xyz[1]), float(spacing_xyz[0])
    radius = max(detection.diameter_mm / 2.0, 2.0)
    ci, cr, cc = detection.center_irc
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.8))
    _panel(axes[0], np.asarray(volume[i]), (cr, cc), (sr, sc), radius, f"axial (slice {i})")
    _panel(axes[1], np.asarray(volume[:, r, :]), (ci, cc), (si, sc), radius, f"coronal (row {r})")
    _panel(axes[2], np.asarray(volume[:, :, c]), (ci, cr), (si, sr), radius, f"sagittal (column {c})")
    malignancy = "" if detection.malignancy is None else f", malignancy {detection.malignancy:.2f}"
    fig.suptitle(f"{title}: nodule {detection.probability:.2f}{malignancy}, ~{detection.diameter_mm:.1f} mm", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=80)
    plt.close(fig)
    return path
