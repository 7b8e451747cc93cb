"""SegmentationDataset and the book's nodule masks, on hand-built scans."""

import itertools

import numpy as np
import pytest
import torch
from _ct_files import DIRECTIONS, write_scan
from _luna_fixture import SeriesTruth, write_csvs

from torchlite.data.datasets import LunaSource, SegmentationDataset
from torchlite.data.datasets import masks

SHAPE = (12, 40, 44)
AIR, LUNG, TISSUE = -1000, -850, 40
# Nodules as (first voxel, last voxel) inclusive, IRC. Their grown boxes are
# exactly these blocks: lung (below -700) surrounds them.
NODULES = {
    "wide": ((4, 10, 16), (8, 14, 26)),  # 11 columns but 5 rows: the book's col/row radius mix-up cuts it
    "first_slice": ((0, 26, 5), (2, 30, 9)),  # the book's growth wraps to the last slice here and drops it
    "last_slice": ((9, 26, 30), (11, 32, 36)),
}
VESSEL = (slice(0, 12), slice(34, 36), slice(38, 40))  # bright, but in no nodule's box


def _center(block):
    lo, hi = np.array(block[0]), np.array(block[1])
    return tuple(int(v) for v in (lo + hi) // 2)


def _scan(seed):
    rng = np.random.default_rng(seed)
    a = np.full(SHAPE, AIR, dtype=np.int16)
    a[:, 3:37, 2:42] = LUNG + rng.integers(-40, 40, size=(SHAPE[0], 34, 40))
    for lo, hi in NODULES.values():
        block = (slice(lo[0], hi[0] + 1), slice(lo[1], hi[1] + 1), slice(lo[2], hi[2] + 1))
        a[block] = TISSUE + rng.integers(-30, 300, size=np.subtract(hi, lo) + 1)
    a[VESSEL] = 200
    return a


def _truth_mask():
    m = np.zeros(SHAPE, dtype=bool)
    for lo, hi in NODULES.values():
        m[lo[0]:hi[0] + 1, lo[1]:hi[1] + 1, lo[2]:hi[2] + 1] = True
    return m


# Non-nodule candidates: three in lung away from every nodule, and one so
# close to the "wide" nodule that every training window around it shows it
# (negative crops must then move on to another candidate).
NEGATIVES = [(6, 30, 25), (3, 20, 35), (10, 8, 8)]
NEAR_NODULE = (5, 16, 14)


def _luna(root, malignancy_csv=True):
    series = []
    for i, direction in enumerate(("identity", "flip_yz")):
        uid = f"1.2.3.{i}"
        array = _scan(i)
        mhd = write_scan(root / "subset0" / f"{uid}.mhd", array, direction=DIRECTIONS[direction])
        nodules = [_center(b) for b in NODULES.values()]
        series.append(SeriesTruth(uid, array, mhd, benign=nodules, negatives=NEGATIVES + [NEAR_NODULE]))
    write_csvs(root, series)
    if not malignancy_csv:
        (root / "annotations_with_malignancy.csv").unlink()
    return LunaSource(root), {s.uid: s for s in series}


@pytest.fixture(scope="module")
def luna(tmp_path_factory):
    return _luna(tmp_path_factory.mktemp("luna"))


def test_mask_of_block_nodules_is_the_blocks():
    hu = _scan(0)
    centers = [_center(b) for b in NODULES.values()]
    np.testing.assert_array_equal(masks.annotation_mask(hu, centers), _truth_mask())
    boxes = masks.nodule_boxes(hu, centers)
    # By hand, the book's rule: a radius grows from 2 while both ends are
    # above -700, so the box takes one dim voxel beyond each side of a block;
    # where the growth meets the scan's edge it stops a step short of it.
    assert boxes.tolist() == [
        [[3, 9, 15], [9, 15, 27]],
        [[0, 25, 4], [2, 31, 10]],  # slices 0..2: the edge, not a wrap to slice 11
        [[9, 25, 29], [11, 33, 37]],
    ]
    np.testing.assert_array_equal(masks.positive_slices(hu, boxes), np.flatnonzero(_truth_mask().any(axis=(1, 2))))


def test_mask_threshold_and_growth_follow_the_book():
    hu = np.full((9, 9, 9), LUNG, dtype=np.int16)
    # a dim nodule center with bright voxels at radius 2 still starts the growth
    # at radius 2 (the book never tests the center itself)
    hu[2:7, 2:7, 2:7] = 0
    hu[4, 4, 4] = -900
    mask = masks.annotation_mask(hu, [(4, 4, 4)])
    expected = np.zeros_like(mask)
    expected[2:7, 2:7, 2:7] = True
    expected[4, 4, 4] = False  # below the threshold: not nodule, though inside the box
    np.testing.assert_array_equal(mask, expected)
    assert not masks.annotation_mask(hu, [(4, 4, 4)], threshold=10).any()
    # a center outside the scan masks nothing
    assert not masks.annotation_mask(hu, [(20, 4, 4)]).any()


def test_box_mask_windows_reach_past_the_scan():
    boxes = np.array([[[0, 0, 0], [1, 2, 3]]])
    m = masks.box_mask(boxes, (-1, -1, -1), (3, 3, 3))
    expected = np.zeros((3, 3, 3), dtype=bool)
    expected[1:, 1:, 1:] = True
    np.testing.assert_array_equal(m, expected)


def _context(array, s, context=3):
    idx = np.clip(np.arange(s - context, s + context + 1), 0, array.shape[0] - 1)
    return idx, np.clip(array[idx].astype(np.float32), -1000, 1000)


def test_validation_items_are_the_masked_slices_with_clamped_context(luna):
    src, truth = luna
    ds = SegmentationDataset(src, val=True, val_stride=1)
    expected_slices = np.flatnonzero(_truth_mask().any(axis=(1, 2)))
    got = {}
    for i in range(len(ds)):
        it = ds[i]
        a = truth[it.series_uid].array
        assert it.ct.dtype == torch.float32 and tuple(it.ct.shape) == (7, *SHAPE[1:])
        assert it.mask.dtype == torch.bool and tuple(it.mask.shape) == (1, *SHAPE[1:])
        _, ct = _context(a, it.slice_index)
        np.testing.assert_array_equal(it.ct.numpy(), ct)
        np.testing.assert_array_equal(it.mask[0].numpy(), _truth_mask()[it.slice_index])
        got.setdefault(it.series_uid, []).append(it.slice_index)
    assert got == {uid: expected_slices.tolist() for uid in truth}


def test_annotations_csv_stands_in_for_the_malignancy_file(tmp_path, luna):
    src, _ = _luna(tmp_path, malignancy_csv=False)
    with_file = SegmentationDataset(luna[0], val=True, val_stride=1)
    without = SegmentationDataset(src, val=True, val_stride=1)
    assert len(without) == len(with_file) > 0
    for i in range(len(without)):
        assert without[i].slice_index == with_file[i].slice_index
        assert torch.equal(without[i].mask, with_file[i].mask)


def test_edge_slices_repeat_as_their_own_context(luna):
    src, truth = luna
    ds = SegmentationDataset(src, val=True, val_stride=1, full_ct=True)
    assert len(ds) == 2 * SHAPE[0]
    a = truth[ds[0].series_uid].array
    first, last = ds[0], ds[SHAPE[0] - 1]
    assert (first.slice_index, last.slice_index) == (0, SHAPE[0] - 1)
    idx, _ = _context(a, 0)
    assert idx.tolist() == [0, 0, 0, 0, 1, 2, 3]
    for k, s in enumerate(idx):
        np.testing.assert_array_equal(first.ct[k].numpy(), np.clip(a[s], -1000, 1000))
    idx, _ = _context(a, SHAPE[0] - 1)
    assert idx.tolist() == [8, 9, 10, 11, 11, 11, 11]
    for k, s in enumerate(idx):
        np.testing.assert_array_equal(last.ct[k].numpy(), np.clip(a[s], -1000, 1000))


def _find_window(item, array, crop, patch, center):
    """The (row0, col0) of the training window the item was cut from, among
    those the book's rule allows, checked against numpy indexing."""
    _, h, w = array.shape
    r96 = min(max(center[1] - crop // 2, 0), max(h - crop, 0))
    c96 = min(max(center[2] - crop // 2, 0), max(w - crop, 0))
    idx, _ = _context(array, item.slice_index)
    clipped = np.clip(array.astype(np.float32), -1000, 1000)
    padded = np.pad(clipped, ((0, 0), (0, patch), (0, patch)), constant_values=-1000)
    for dr, dc in itertools.product(range(crop - patch + 1), repeat=2):
        r0, c0 = r96 + dr, c96 + dc
        if np.array_equal(item.ct.numpy(), padded[idx][:, r0:r0 + patch, c0:c0 + patch]):
            return r0, c0
    return None


def test_training_items_are_context_crops_with_their_mask(luna):
    src, truth = luna
    crop, patch = 24, 16
    n = 48  # 12 negative items: every negative candidate comes up
    ds = SegmentationDataset(
        src, val_stride=0, crop_size=crop, patch_size=patch, negative_fraction=0.25, epoch_samples=n
    )
    nodule_centers = {_center(b) for b in NODULES.values()}
    truth_mask = np.pad(_truth_mask(), ((0, 0), (0, patch), (0, patch)))
    offsets, kinds = set(), []
    for i in range(len(ds)):
        it = ds[i]
        assert tuple(it.ct.shape) == (7, patch, patch) and tuple(it.mask.shape) == (1, patch, patch)
        s = truth[it.series_uid]
        sites = [c for c in s.nodules + s.negatives if c[0] == it.slice_index]
        assert NEAR_NODULE not in sites
        found = [(c, _find_window(it, s.array, crop, patch, c)) for c in sites]
        found = [(c, rc) for c, rc in found if rc is not None]
        assert found, f"item {i} is no allowed window around a candidate of slice {it.slice_index}"
        center, (r0, c0) = found[0]
        offsets.add((r0, c0))
        expected = truth_mask[it.slice_index, r0:r0 + patch, c0:c0 + patch]
        np.testing.assert_array_equal(it.mask[0].numpy(), expected)
        kinds.append(center in nodule_centers)
        assert it.mask.any() == (center in nodule_centers)  # negatives stay away from nodules
    assert kinds == [not (i % 4 == 3) for i in range(n)]  # exactly a quarter negatives, spread evenly
    assert len(offsets) > 6  # random offsets


def test_training_epochs_and_seeds(luna):
    src, _ = luna

    def items(seed, epoch):
        ds = SegmentationDataset(src, val_stride=0, crop_size=24, patch_size=16, epoch_samples=8, seed=seed)
        ds.set_epoch(epoch)
        return [ds[i] for i in range(len(ds))]

    a, b = items(0, 0), items(0, 0)
    assert all(torch.equal(x.ct, y.ct) and torch.equal(x.mask, y.mask) for x, y in zip(a, b))
    assert any(not torch.equal(x.ct, y.ct) for x, y in zip(a, items(0, 1)))
    assert any(not torch.equal(x.ct, y.ct) for x, y in zip(a, items(1, 0)))
    assert len(SegmentationDataset(src, val_stride=0)) == 300_000  # the book's epoch


def test_no_negatives_when_the_fraction_is_zero(luna):
    src, _ = luna
    ds = SegmentationDataset(src, val_stride=0, crop_size=24, patch_size=16, negative_fraction=0.0, epoch_samples=12)
    assert all(ds[i].mask.any() for i in range(len(ds)))


def test_bad_arguments_are_named(luna):
    src, _ = luna
    with pytest.raises(ValueError, match="`negative_fraction`"):
        SegmentationDataset(src, negative_fraction=1.0)
    with pytest.raises(ValueError, match="`crop_size`"):
        SegmentationDataset(src, crop_size=32, patch_size=64)
    with pytest.raises(ValueError, match="`context_slices`"):
        SegmentationDataset(src, context_slices=-1)
    with pytest.raises(ValueError, match="`clip`"):
        SegmentationDataset(src, clip=(-500, 1000))
    with pytest.raises(ValueError, match="`fill`"):
        SegmentationDataset(src, fill=0.0)
    with pytest.raises(ValueError, match="`epoch_samples`"):
        SegmentationDataset(src, epoch_samples=0)
    with pytest.raises(ValueError, match="val_stride"):
        SegmentationDataset(src, val=True, val_stride=0)
