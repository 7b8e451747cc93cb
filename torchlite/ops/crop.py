"""crop3d: candidate patches cut straight out of a CT volume.

The book's ``getRawCandidate`` slices one candidate at a time in Python;
``crop3d`` cuts a whole batch in one call (C++ and CUDA kernels in
csrc/{cpu,cuda}/crop3d.*), converting to float32 and clipping HU values on
the way. The plain-PyTorch equivalent is
``torchlite.ops.reference.crop3d_reference``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from torchlite.ops import _library

_library.load()

__all__ = ["crop3d"]


def crop3d(
    volume: torch.Tensor,
    centers: torch.Tensor,
    size: Sequence[int],
    *,
    fill: float = -1000.0,
    clamp: bool = False,
    clip: Sequence[float] | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cut N patches of ``size`` = (d, h, w) voxels around integer centers.

    Args:
        volume: (D, H, W) int16 or float32 CT volume in HU, any strides. It
            is read in place, never copied: a memory-mapped scan works with
            zero copy, e.g. ``torch.from_numpy(np.load(path, mmap_mode="r"))``
            (torch warns that the array is read-only; crop3d never writes to
            ``volume``, so that warning can be silenced) or
            ``torch.from_numpy(np.memmap(raw, np.int16, "r", shape=(D, H, W)))``.
            Only the pages under the patches are read.
        centers: (N, 3) int64 centers in IRC order (index, row, column), any
            strides, on the same device as ``volume``. Any value is allowed,
            however far outside the volume.
        size: patch size (d, h, w), each > 0. The patch starts at
            ``center - size // 2`` on each axis (an even size puts the center
            just past the middle, as the book does).
        fill: value of patch voxels outside the volume (default -1000 HU, air).
        clamp: shift each window inward so it lies inside the volume, as the
            book does (start clamped to ``[0, dim - size]``); an axis longer
            than the volume starts at 0 and the excess takes ``fill``.
        clip: optional ``[lo, hi]`` (lo <= hi): voxel values read from the
            volume are clipped to it (NaN stays NaN, as in ``torch.clamp``).
            ``fill`` is not clipped: it is a value the caller chose, not data
            read from the scan, so a fill outside [lo, hi] is kept as given
            (it can mark padding distinctly).
        out: optional preallocated (N, 1, d, h, w) float32 contiguous tensor
            on ``volume``'s device, written and returned. Reusing one buffer
            avoids the page faults of a fresh allocation every batch.

    Returns:
        (N, 1, d, h, w) float32 contiguous patches (``out`` when given).
        N = 0 gives an empty (0, 1, d, h, w) tensor.

    Not differentiable (volumes are data, not parameters).
    """
    if not isinstance(volume, torch.Tensor):
        raise TypeError(
            f"torchlite.crop3d: `volume` must be a torch.Tensor, got {type(volume).__name__}; "
            "wrap a numpy array (memory-mapped or not) with torch.from_numpy, which does not copy"
        )
    size = list(size)
    clip = None if clip is None else [float(c) for c in clip]
    if out is None:
        return torch.ops.torchlite.crop3d(volume, centers, size, float(fill), bool(clamp), clip)
    torch.ops.torchlite.crop3d_out(volume, centers, size, float(fill), bool(clamp), clip, out)
    return out


# --- fake (meta) kernels -------------------------------------------------------
# They mirror csrc/crop3d_args.h, message for message: they run under
# torch.compile / FakeTensor, and for meta tensors (a meta argument beside a
# CPU one dispatches here, not to the C++ kernel).


def _check_args(op, volume, centers, size, clip):
    if volume.dtype not in (torch.int16, torch.float32):
        raise TypeError(f"torchlite.{op}: `volume` must be Short or Float, got {volume.dtype}")
    if volume.dim() != 3:
        raise RuntimeError(f"torchlite.{op}: `volume` must be 3-D (D, H, W), got shape {list(volume.shape)}")
    if centers.dtype != torch.int64:
        raise TypeError(f"torchlite.{op}: `centers` must be Long, got {centers.dtype}")
    if centers.dim() != 2 or centers.shape[1] != 3:
        raise RuntimeError(
            f"torchlite.{op}: `centers` must have shape (N, 3) (index, row, column), got {list(centers.shape)}"
        )
    if centers.device != volume.device:
        raise RuntimeError(
            f"torchlite.{op}: `centers` is on {centers.device} but `volume` is on {volume.device}; "
            "move both to the same device"
        )
    if len(size) != 3:
        raise RuntimeError(f"torchlite.{op}: `size` must have 3 entries (d, h, w), got {len(size)}")
    if any(s <= 0 for s in size):
        raise RuntimeError(f"torchlite.{op}: `size` entries must be positive, got {list(size)}")
    if clip is not None:
        if len(clip) != 2:
            raise RuntimeError(f"torchlite.{op}: `clip` must have 2 entries [lo, hi], got {len(clip)}")
        if not clip[0] <= clip[1]:
            raise RuntimeError(f"torchlite.{op}: `clip` must satisfy lo <= hi, got [{clip[0]}, {clip[1]}]")
    return (centers.shape[0], 1, *size)


@torch.library.register_fake("torchlite::crop3d")
def _crop3d_fake(volume, centers, size, fill=-1000.0, clamp=False, clip=None):
    shape = _check_args("crop3d", volume, centers, size, clip)
    return volume.new_empty(shape, dtype=torch.float32)


@torch.library.register_fake("torchlite::crop3d_out")
def _crop3d_out_fake(volume, centers, size, fill, clamp, clip, out):
    shape = _check_args("crop3d_out", volume, centers, size, clip)
    if out.dtype != torch.float32:
        raise TypeError(f"torchlite.crop3d_out: `out` must be Float, got {out.dtype}")
    if out.device != volume.device:
        raise RuntimeError(
            f"torchlite.crop3d_out: `out` is on {out.device} but `volume` is on {volume.device}; "
            "move both to the same device"
        )
    if tuple(out.shape) != tuple(shape):
        raise RuntimeError(
            f"torchlite.crop3d_out: `out` must have shape (N, 1, d, h, w) = {list(shape)}, got {list(out.shape)}"
        )
    if not out.is_contiguous():
        raise RuntimeError(f"torchlite.crop3d_out: `out` must be contiguous, got strides {out.stride()}")
    return None
