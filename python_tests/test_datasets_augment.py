"""Candidate augmentation: per sample from the scan, or per batch on the device."""

import numpy as np
import pytest
import torch
from _luna_fixture import make_luna

from torchlite.data.datasets import CandidateDataset, LunaSource
from torchlite.data.datasets.batch_augment import BatchAugment3d
from torchlite.ops.random_affine import AffineDraw, RandomAffine3d
from torchlite.ops.theta import normalized_theta_to_voxel

SIZE = (8, 12, 10)
IDENTITY = dict(flip=False, offset=0.0, scale=0.0, rotate=False, noise=0.0)


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    root = tmp_path_factory.mktemp("luna")
    make_luna(root, n_series=3, n_negatives=8, shape=(24, 40, 44))
    return LunaSource(root)


def _ds(src, **kw):
    kw.setdefault("size", SIZE)
    return CandidateDataset(src, val_stride=0, ratio=1, epoch_samples=12, **kw)


def test_augmentation_is_deterministic_per_seed_epoch_and_index(src):
    a, b = _ds(src, augment="sample", seed=5), _ds(src, augment="sample", seed=5)
    plain = _ds(src, seed=5)
    for i in range(len(a)):
        x = a[i]
        assert torch.equal(x.crop, a[i].crop)  # same index again
        assert torch.equal(x.crop, b[i].crop)  # another instance
        assert torch.equal(x.center_irc, plain[i].center_irc)  # augmentation does not change the order
        assert not torch.equal(x.crop, plain[i].crop)  # it changes the crop
    b.set_epoch(1)
    assert not torch.equal(a[0].crop, b[0].crop)
    assert not torch.equal(a[0].crop, _ds(src, augment="sample", seed=6)[0].crop)


@pytest.mark.parametrize("clamp", [False, True])
def test_identity_augmentation_equals_the_plain_crop(src, clamp):
    aug = _ds(src, augment="sample", augmentation=RandomAffine3d(**IDENTITY), clamp=clamp)
    plain = _ds(src, clamp=clamp)
    for i in range(len(aug)):
        assert torch.equal(aug[i].crop, plain[i].crop)


def test_flips_mirror_the_crop(src):
    flips = RandomAffine3d(flip=True, offset=0.0, scale=0.0, rotate=False, noise=0.0)
    ds = _ds(src, augment="sample", augmentation=flips)
    plain = _ds(src)
    seen = set()
    for i in range(len(ds)):
        theta = ds.augmentation.draw(1, ds.augmentation_generator(i)).theta[0]
        # theta's diagonal is (x, y, z) = (column, row, index)
        axes = tuple(axis for axis, k in ((2, 0), (1, 1), (0, 2)) if theta[k, k] < 0)
        seen.add(axes)
        expected = np.flip(plain[i].crop[0].numpy(), axis=axes) if axes else plain[i].crop[0].numpy()
        np.testing.assert_array_equal(ds[i].crop[0].numpy(), expected)
    assert len(seen) > 2  # several flip combinations were exercised


def test_noise_has_the_books_std(src):
    noise = RandomAffine3d(flip=False, offset=0.0, scale=0.0, rotate=False, noise=25.0)
    ds = _ds(src, augment="sample", augmentation=noise)
    plain = _ds(src)
    diff = torch.cat([(ds[i].crop - plain[i].crop).flatten() for i in range(len(ds))])
    assert abs(diff.mean().item()) < 1.0
    assert diff.std().item() == pytest.approx(25.0, rel=0.05)


def _interior(theta_vox, size, margin=1.0):
    """Output voxels whose source position lies at least `margin` voxels
    inside the crop window, so every interpolation corner is a crop voxel."""
    grids = torch.meshgrid(*[torch.arange(s, dtype=torch.float64) - s // 2 for s in size], indexing="ij")
    p = torch.stack(grids, dim=-1)  # (d, h, w, 3) offsets from the center
    src_off = p @ theta_vox[:, :3].T + theta_vox[:, 3]  # relative to the center
    lo = torch.tensor([-(s // 2) for s in size], dtype=torch.float64)
    hi = lo + torch.tensor(size, dtype=torch.float64) - 1
    return ((src_off >= lo + margin) & (src_off <= hi - margin)).all(dim=-1)


def test_batch_path_equals_per_sample_path_away_from_the_borders(src):
    geometry = RandomAffine3d(noise=0.0, offset=0.05, scale=0.1)
    per_sample = _ds(src, augment="sample", augmentation=geometry, size=(12, 24, 24))
    plain = _ds(src, augment="batch", augmentation=geometry, size=(12, 24, 24))
    n = len(plain)
    crops = torch.stack([plain[i].crop for i in range(n)])
    thetas = torch.cat([geometry.draw(1, per_sample.augmentation_generator(i)).theta for i in range(n)])
    batch = BatchAugment3d(geometry).apply(crops, AffineDraw(thetas, 0.0, 0))
    compared = 0
    for i in range(n):
        inside = _interior(normalized_theta_to_voxel(thetas[i].double(), (12, 24, 24)), (12, 24, 24))
        a, b = per_sample[i].crop[0][inside], batch[i, 0][inside]
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-5)
        compared += int(inside.sum())
    assert compared > 0.2 * crops[:, 0].numel()


def test_batch_augment_is_one_reproducible_call_per_batch(src):
    ds = _ds(src, augment="batch", size=SIZE)
    crops = torch.stack([ds[i].crop for i in range(len(ds))])
    assert crops.dtype == torch.int16  # exact: the float crops are integer HU
    for i in range(len(ds)):  # the dataset hands out plain crops
        np.testing.assert_array_equal(crops[i, 0].numpy(), _ds(src)[i].crop[0].numpy())
    aug = ds.batch_augment()
    first = aug(crops)
    assert first.shape == crops.shape and first.dtype == torch.float32
    draw = aug.draw(len(ds))  # int16 crops give what their float32 values give
    assert torch.equal(aug.apply(crops, draw), aug.apply(crops.float(), draw))
    assert not torch.equal(first, crops)
    assert not torch.equal(aug(crops), first)  # the next batch draws new transforms
    aug.set_epoch(0)
    assert torch.equal(aug(crops), first)  # an epoch replays
    aug.set_epoch(1)
    assert not torch.equal(aug(crops), first)
    # per-sample transforms: two copies of one crop come out different
    twins = crops[:1].repeat(2, 1, 1, 1, 1)
    out = BatchAugment3d(RandomAffine3d(noise=0.0))(twins)
    assert not torch.equal(out[0], out[1])
    identity = BatchAugment3d(RandomAffine3d(**IDENTITY))
    torch.testing.assert_close(identity(crops), crops.float(), atol=1e-4, rtol=0)
    float_ds = _ds(src, augment="batch", size=SIZE, crop_dtype=torch.float32)
    assert torch.equal(float_ds[0].crop, _ds(src)[0].crop)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(augment="sample", crop_dtype=torch.int16), "interpolates"),
        (dict(augment="batch", fill=-1000.5), r"fill=-1000\.5"),
        (dict(augment="batch", clip=(-1000, 1000.25)), r"clip=\(-1000\.0, 1000\.25\)"),
        (dict(crop_dtype=torch.int16, fill=40000), "fill=40000"),
        (dict(crop_dtype=torch.float64), "crop_dtype"),
    ],
)
def test_int16_crops_must_be_exact(src, kwargs, match):
    with pytest.raises(ValueError, match=match):
        _ds(src, **kwargs)


def test_plain_int16_crops_equal_float_crops_with_any_integer_clip(src):
    for clip in [None, (-500, 300)]:
        a = _ds(src, crop_dtype=torch.int16, clip=clip, fill=-2000)
        b = _ds(src, clip=clip, fill=-2000)
        for i in range(len(a)):
            assert a[i].crop.dtype == torch.int16
            assert torch.equal(a[i].crop.float(), b[i].crop)


def test_batch_augment_checks_its_input(src):
    aug = BatchAugment3d()
    with pytest.raises(ValueError, match=r"\(N, C, D, H, W\)"):
        aug(torch.zeros(2, 8, 8, 8))
    with pytest.raises(ValueError, match="thetas for a batch"):
        aug.apply(torch.zeros(2, 1, 4, 4, 4), aug.draw(3))
    with pytest.raises(ValueError, match="augment='batch'"):
        _ds(src, augment="sample").batch_augment()
