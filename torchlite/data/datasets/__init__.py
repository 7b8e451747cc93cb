"""Datasets for the book's three models, over a LUNA16 folder.

- :class:`CandidateDataset`: nodule / non-nodule patches (chapters 11-12);
- :class:`SegmentationDataset`: slices with context and nodule masks (chapter 13);
- :class:`MalignancyDataset`: benign / malignant patches (chapter 14);

all split by series with :func:`split_series`, over a :class:`LunaSource`
that can be shared between them. :class:`BatchAugment3d` augments a batch
of candidate patches on the training device
(``from torchlite.data.datasets.batch_augment import BatchAugment3d``; it
is not imported here because it loads the compiled operators).
"""

from torchlite.data.datasets.candidate_dataset import CandidateDataset
from torchlite.data.datasets.malignancy_dataset import MalignancyDataset
from torchlite.data.datasets.patch_dataset import CandidateSample
from torchlite.data.datasets.segmentation_dataset import SegmentationDataset, SegmentationSample
from torchlite.data.datasets.source import CandidateTable, LunaSource
from torchlite.data.datasets.split import SeriesSplit, split_series

__all__ = [
    "CandidateDataset",
    "CandidateSample",
    "CandidateTable",
    "LunaSource",
    "MalignancyDataset",
    "SegmentationDataset",
    "SegmentationSample",
    "SeriesSplit",
    "split_series",
]
