"""The three datasets over the synthetic LUNA16 generator's output (small scans).

The generator writes nodules where its CSVs say, through flipped direction
matrices too: a dataset that mixed up XYZ and IRC would center its nodule
patches on lung or air.
"""

import pytest
import torch
from torch.utils.data import DataLoader

from torchlite.data.datasets import CandidateDataset, LunaSource, MalignancyDataset, SegmentationDataset

synth = pytest.importorskip("torchlite.data.synth")


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    summary = synth.generate_dataset(root, 4, seed=0, size="small", progress=False)
    assert summary.n_flipped > 0 and summary.n_nodules > 0
    return LunaSource(root)


def test_nodule_patches_are_centered_on_nodule_tissue(src):
    for ds in (MalignancyDataset(src, val=True, val_stride=1), SegmentationDataset(src, val=True, val_stride=1)):
        assert len(ds) > 0
    nodules = MalignancyDataset(src, val=True, val_stride=1)
    for i in range(len(nodules)):
        crop = nodules[i].crop[0]
        assert crop[16, 24, 24] > -700, nodules[i].series_uid  # the book's nodule threshold
    candidates = CandidateDataset(src, val=True, val_stride=1)
    positives = [candidates[i] for i in range(len(candidates)) if candidates[i].label == 1]
    assert positives and all(p.crop[0, 16, 24, 24] > -700 for p in positives)
    slices = SegmentationDataset(src, val=True, val_stride=1)
    assert all(slices[i].mask.any() for i in range(len(slices)))


def test_training_batches_from_workers(src):
    datasets = [
        CandidateDataset(src, val_stride=2, epoch_samples=16, augment="sample"),
        MalignancyDataset(src, val_stride=2, epoch_samples=16, augment="sample"),
        SegmentationDataset(src, val_stride=2, epoch_samples=16),
    ]
    for ds in datasets:
        batches = list(DataLoader(ds, batch_size=8, num_workers=2))
        assert len(batches) == 2
        x = batches[0][0]
        assert x.dtype == torch.float32 and torch.isfinite(x).all()
        assert set(batches[0][2]) <= set(src.split(2).train)
