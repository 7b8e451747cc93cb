"""Classifier training batches: torchlite's datasets against the book's path.

A batch is 32 candidate patches of 32x48x48, balanced nodule / non-nodule,
augmented as the book's chapter 12 (flip, offset 0.1, scale 0.2, rotation,
noise 25 HU). The scans are full-size synthetic ones (512x512, ~300 slices,
~100 MB each), written once by ``torchlite.data.synth`` under the temp dir
and reused, and read from a warm page cache.

The book's uncached path (its ``LunaDataset`` without ``diskcache``): per
sample, SimpleITK reads the whole scan, it is converted to float32 and
clipped, the patch is sliced out, then one ``affine_grid`` +
``grid_sample`` + ``randn_like``. The book's ``getCt`` keeps one scan
(``lru_cache(1)``), which with ~800 shuffled training series almost never
hits: modelled as a load per sample.

The book's cached path (the reference of the 5x goal): its crops are served
by ``getCtRawCandidate``, memoized in a ``diskcache.FanoutCache`` (64
shards, its ``GzipDisk``) that its ``prepcache`` run filled with every
candidate's float32 crop. Modelled with the same store, warm (filled once
under the temp dir and kept): per sample, a memoized lookup (the shard's
sqlite row, then the value's file read and unpickled) and the same
augmentation. The book's ``GzipDisk`` only compresses ``bytes`` values; a
memoized result is pickled by diskcache's own ``Disk``, uncompressed, so
there is no gunzip on this path (nor in the book). ``diskcache`` is only a
``dev`` dependency: without it the case is skipped and its goals read "not
run".

The "crops in memory" case (the book's augmentation of crops already in
memory, no lookup at all) is kept without a goal: it costs less than the
cached path, so a speed-up over it bounds the speed-up over that path from
below.

Two groups:

- in process, one batch per call, one torch thread: the work a DataLoader
  worker does (workers run with one thread). Several threads per tiny
  per-item kernel only add OpenMP hand-offs, which on a busy machine cost
  more than the work;
- DataLoader with 2 persistent workers (the issue's setting), one epoch of
  8 batches per call (4 per worker, in parallel), each call on the next
  indices.
"""

from __future__ import annotations

import functools
import math
import os
import random
import tempfile
from collections import namedtuple
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from torchlite.bench.kept import build_kept_dir
from torchlite.bench.registry import Case, CaseUnavailable, register

BATCH = 32
SIZE = (32, 48, 48)
N_SCANS = 2
SYNTH_SEED = 0
WORKERS = 2
# Batches per call in the DataLoader group: 4 per worker, so the start of each call's epoch (indices
# out, first batches back) is spread over several batches, as in a training epoch's steady stream.
LOADER_BATCHES = 4 * WORKERS
_WHAT = f"{BATCH} x 32x48x48 + augmentation, {N_SCANS} synthetic 512x512 scans"
GROUP = f"training samples, in process (1 thread, 1 batch/call): {_WHAT}"
GROUP_WORKERS = f"training samples, DataLoader {WORKERS} workers ({LOADER_BATCHES} batches/call): {_WHAT}"
BOOK = "reference: book's uncached path (SimpleITK load per sample)"
BOOK_CACHED = "reference: book's cached path (diskcache, warm)"
BOOK_READY = "book's augmentation of crops in memory (lower bound)"  # no goal: see the doc
DEVICES = ("cpu", "cuda")


@functools.lru_cache(maxsize=1)
def _root() -> Path:
    """The synthetic dataset, generated on first use and kept between runs."""
    from torchlite.data.synth import generate_dataset

    root = Path(tempfile.gettempdir()) / "torchlite_bench" / f"synth_full_{N_SCANS}_seed{SYNTH_SEED}"
    if not (root / "candidates.csv").is_file():  # the generator writes the CSVs last
        generate_dataset(root, N_SCANS, SYNTH_SEED, size="full", overwrite=True, progress=False)
    return root


@functools.lru_cache(maxsize=1)
def _source():
    from torchlite.data.datasets import LunaSource

    return LunaSource(_root())


def _to(batch: torch.Tensor, device: str) -> torch.Tensor:
    return batch if device == "cpu" else batch.to(device, non_blocking=True)


def _one_thread(fn):
    def run():
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn()
        finally:
            torch.set_num_threads(threads)

    return run


# --- the book's way ---------------------------------------------------------------


def _book_augment(chunk: np.ndarray, rng: random.Random) -> torch.Tensor:
    """Chapter 12's getCtAugmentedCandidate, after the crop."""
    import torch.nn.functional as F

    ct = torch.tensor(chunk).unsqueeze(0).unsqueeze(0).to(torch.float32)
    transform = torch.eye(4)
    for i in range(3):
        if rng.random() > 0.5:
            transform[i, i] *= -1
        transform[i, 3] = 0.1 * (rng.random() * 2 - 1)
        transform[i, i] *= 1.0 + 0.2 * (rng.random() * 2 - 1)
    angle = rng.random() * math.pi * 2
    s, c = math.sin(angle), math.cos(angle)
    transform @= torch.tensor([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=torch.float32)
    grid = F.affine_grid(transform[:3].unsqueeze(0), list(ct.shape), align_corners=False)
    out = F.grid_sample(ct, grid, padding_mode="border", align_corners=False)
    out += torch.randn_like(out) * 25.0
    return out[0]


_IrcTuple = namedtuple("_IrcTuple", "index, row, col")  # the book's IrcTuple (pickled with each cached crop)


def _book_ct(mhd: str):
    """Chapter 12's Ct(...): load, convert to float32, clip; (hu, origin, spacing, direction)."""
    import SimpleITK as sitk

    image = sitk.ReadImage(mhd)
    hu = np.array(sitk.GetArrayFromImage(image), dtype=np.float32)
    hu.clip(-1000, 1000, hu)
    origin, spacing = np.array(image.GetOrigin()), np.array(image.GetSpacing())
    return hu, origin, spacing, np.array(image.GetDirection()).reshape(3, 3)


def _book_crop(ct, center_xyz) -> tuple[np.ndarray, _IrcTuple]:
    """Chapter 12's Ct.getRawCandidate: (float32 chunk of SIZE, center_irc)."""
    hu, origin, spacing, direction = ct
    cri = ((np.array(center_xyz) - origin) @ np.linalg.inv(direction)) / spacing  # the book's xyz2irc
    center_irc = _IrcTuple(*(int(c) for c in np.round(cri)[::-1]))
    slices = []
    for axis, c in enumerate(center_irc):
        start = min(max(int(round(c - SIZE[axis] / 2)), 0), hu.shape[axis] - SIZE[axis])
        slices.append(slice(start, start + SIZE[axis]))
    return hu[tuple(slices)], center_irc


def _book_raw_candidate(mhd: str, center_xyz) -> np.ndarray:
    """The uncached path: a whole scan loaded for one crop."""
    return _book_crop(_book_ct(mhd), center_xyz)[0]


class _BookDataset(Dataset):
    """The book's balanced uncached dataset: nodule, non-nodule, nodule, ..."""

    def __init__(self):
        from torchlite.data.candidates import load_candidate_info

        src = _source()
        records, _ = load_candidate_info(src.root)
        order = random.Random(0)
        self.pos = [r for r in records if r.is_nodule]
        self.neg = [r for r in records if not r.is_nodule]
        order.shuffle(self.pos)
        order.shuffle(self.neg)
        self.paths = {uid: str(p) for uid, p in src.series_paths.items()}

    def __len__(self) -> int:
        return 10**7

    def _record(self, ndx: int):
        lst = self.pos if ndx % 2 == 0 else self.neg
        return lst[(ndx // 2) % len(lst)]

    def __getitem__(self, ndx: int) -> torch.Tensor:
        r = self._record(ndx)
        return _book_augment(_book_raw_candidate(self.paths[r.series_uid], r.center_xyz), random.Random(ndx))


# The book's crop cache (util/disk.py's getCache, dsets.py's getCtRawCandidate).
_CACHE_SCOPE = "part2ch12_raw"
_CACHE_VERSION = 1  # bump when what is stored changes (the key, the crop): the kept store is then rebuilt


@functools.lru_cache(maxsize=1)
def _gzip_disk() -> type:
    """The book's ``GzipDisk``, written again (made on first use: diskcache is
    optional, and this module must import without it)."""
    try:
        import diskcache
    except ImportError:
        raise CaseUnavailable("diskcache is not installed (pip install diskcache)") from None
    import gzip
    import io

    class GzipDisk(diskcache.Disk):
        """A ``diskcache.Disk`` that stores ``bytes`` values (and file-like
        ones, read) gzipped, level 1, fed in 1 GiB chunks as the book's, and
        gunzips them on fetch. Other values (a memoized result) go through
        diskcache's own ``Disk``, which pickles them, uncompressed: so do the
        book's, whose check only ever matches bytes (in its published code,
        cassandra's ``BytesType``: nothing), so its cached crops are plain
        pickles."""

        def store(self, value, read, key=diskcache.UNKNOWN):
            if read:
                value, read = value.read(), False
            if type(value) is bytes:  # exactly bytes, as the book's check
                buf = io.BytesIO()
                with gzip.GzipFile(mode="wb", compresslevel=1, fileobj=buf) as gz:
                    for offset in range(0, len(value), 2**30):
                        gz.write(value[offset:offset + 2**30])
                value = buf.getvalue()
            return super().store(value, read, key=key)

        def fetch(self, mode, filename, value, read):
            value = super().fetch(mode, filename, value, read)
            # Bytes come back from a file or, compressed under 32 KiB, from the sqlite row (the book's
            # fetch only gunzips the former); a pickle never gives bytes (bytes are never pickled).
            if type(value) is bytes and mode in (diskcache.core.MODE_RAW, diskcache.core.MODE_BINARY):
                value = gzip.decompress(value)
            return value

    return GzipDisk


def _book_memoized(directory: Path, paths: dict[str, str]):
    """getCtRawCandidate(series_uid, center_xyz, width_irc) -> (chunk, center_irc),
    memoized in a FanoutCache opened on ``directory`` with the book's settings.
    A miss loads the scan (one kept, the book's ``lru_cache(1)`` getCt)."""
    import diskcache

    cache = diskcache.FanoutCache(str(directory), disk=_gzip_disk(), shards=64, timeout=1, size_limit=3e11)
    ct = functools.lru_cache(maxsize=1)(_book_ct)

    def get_ct_raw_candidate(series_uid: str, center_xyz: tuple, width_irc: tuple):
        assert tuple(width_irc) == SIZE, width_irc
        return _book_crop(ct(paths[series_uid]), center_xyz)

    # An explicit name: the key must not depend on where this closure is defined.
    fn = cache.memoize(name="getCtRawCandidate", typed=True)(get_ct_raw_candidate)
    fn.cache = cache
    return fn


def _book_key(r) -> tuple:
    """The book's arguments for one candidate (plain tuples, as its CandidateInfoTuple holds)."""
    return r.series_uid, tuple(float(v) for v in r.center_xyz), SIZE


def _warm(directory: Path, ds: _BookDataset) -> bool:
    """Whether every candidate's crop is stored under ``directory``."""
    if not directory.is_dir():
        return False
    fn = _book_memoized(directory, ds.paths)
    try:
        return all(fn.__cache_key__(*_book_key(r)) in fn.cache for r in ds.pos + ds.neg)
    finally:
        fn.cache.close()


@functools.lru_cache(maxsize=1)
def _book_cache() -> Path:
    """The book's crop cache, warm (its ``prepcache`` run: every candidate's
    crop stored), built once under the temp dir and kept between runs."""
    _gzip_disk()  # skipped without diskcache, before anything is built
    ds = _BookDataset()
    name = f"book_diskcache_{N_SCANS}_seed{SYNTH_SEED}_v{_CACHE_VERSION}"
    root = Path(tempfile.gettempdir()) / "torchlite_bench" / name
    directory = root / _CACHE_SCOPE
    if _warm(directory, ds):
        return directory

    def build(partial: Path) -> None:
        fill = _book_memoized(partial / _CACHE_SCOPE, ds.paths)
        try:
            # In series order, as the book's prepcache (sortby_str='series_uid'): one scan load per series.
            for r in sorted(ds.pos + ds.neg, key=lambda r: (r.series_uid, tuple(r.center_xyz))):
                fill(*_book_key(r))
        finally:
            fill.cache.close()

    build_kept_dir(root, build)
    return directory


class _BookCachedDataset(_BookDataset):
    """The book's balanced dataset on its warm crop cache: per item, a memoized
    lookup (sqlite row, file read, unpickle), then the book's augmentation."""

    def __init__(self):
        self.cache_dir = _book_cache()  # first: without diskcache, skipped before the scans are written
        super().__init__()
        self._get, self._pid = None, None

    def _lookup(self):
        # A FanoutCache holds open sqlite connections, which must not cross a fork: each process
        # (this one, every DataLoader worker) opens its own on first use, as a worker's first item.
        if self._pid != os.getpid():
            self._get, self._pid = _book_memoized(self.cache_dir, self.paths), os.getpid()
        return self._get

    def __getstate__(self):  # spawned workers: the connections stay behind
        return dict(self.__dict__, _get=None, _pid=None)

    def __getitem__(self, ndx: int) -> torch.Tensor:
        chunk, _ = self._lookup()(*_book_key(self._record(ndx)))
        return _book_augment(chunk, random.Random(ndx))


def _walk(n: int):
    state = {"ndx": 0}

    def indices() -> range:
        start = state["ndx"]
        state["ndx"] = (start + n) % 10**7
        return range(start, start + n)

    return indices


def _book_in_process(ds: Dataset, device: str):
    """One batch a call of the book's per-sample items, on the next indices."""
    nxt = _walk(BATCH)
    return _one_thread(lambda: _to(torch.stack([ds[i] for i in nxt()]), device))


def _make_book(quick: bool, device: str):
    return _book_in_process(_BookDataset(), device)


def _make_book_cached(quick: bool, device: str):
    return _book_in_process(_BookCachedDataset(), device)


def _ready_crops() -> list[np.ndarray]:
    """Crops already in memory (no lookup at all): less work than the book's cached path."""
    from torchlite.data.datasets import CandidateDataset

    plain = CandidateDataset(_source(), val_stride=0, ratio=1, epoch_samples=10**7)
    return [plain[i].crop[0].numpy() for i in range(BATCH * 8)]


def _make_book_ready(quick: bool, device: str):
    chunks = _ready_crops()
    rng, nxt = random.Random(0), _walk(BATCH)
    return _one_thread(lambda: _to(torch.stack([_book_augment(chunks[i % len(chunks)], rng) for i in nxt()]), device))


# --- torchlite ------------------------------------------------------------------


def _dataset(augment: str):
    from torchlite.data.datasets import CandidateDataset

    return CandidateDataset(_source(), val_stride=0, ratio=1, epoch_samples=10**7, augment=augment)


def _make_sample(quick: bool, device: str):
    ds, nxt = _dataset("sample"), _walk(BATCH)
    return _one_thread(lambda: _to(default_collate([ds[i] for i in nxt()]).crop, device))


def _make_batch(quick: bool, device: str):
    ds, nxt = _dataset("batch"), _walk(BATCH)
    augment = ds.batch_augment()
    return _one_thread(lambda: augment(_to(default_collate([ds[i] for i in nxt()]).crop, device)))


class _NextIndices(Sampler):
    """Each epoch, the next `n` indices: with persistent workers, every call
    gets new candidates (the dataset's own epoch stays with the workers)."""

    def __init__(self, n: int):
        self.n, self.next = n, _walk(n)

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return iter(self.next())


def _loader(ds, device: str):
    loader = DataLoader(ds, batch_size=BATCH, sampler=_NextIndices(BATCH * LOADER_BATCHES), num_workers=WORKERS,
                        persistent_workers=True)

    def run():
        return [_to(b if isinstance(b, torch.Tensor) else b.crop, device) for b in loader]

    return run


def _make_book_workers(quick: bool, device: str):
    return _loader(_BookDataset(), device)


def _make_book_cached_workers(quick: bool, device: str):
    return _loader(_BookCachedDataset(), device)


class _BookReadyDataset(Dataset):
    """The book's augmentation of crops already in memory (less than its cached path), per sample."""

    def __init__(self):
        self.chunks = _ready_crops()

    def __len__(self) -> int:
        return 10**7

    def __getitem__(self, ndx: int) -> torch.Tensor:
        return _book_augment(self.chunks[ndx % len(self.chunks)], random.Random(ndx))


def _make_book_ready_workers(quick: bool, device: str):
    return _loader(_BookReadyDataset(), device)


def _make_batch_workers(quick: bool, device: str):
    ds = _dataset("batch")
    augment, load = ds.batch_augment(), _loader(ds, device)
    return lambda: [augment(crops) for crops in load()]


def _make_sample_workers(quick: bool, device: str):
    return _loader(_dataset("sample"), device)


register(Case(GROUP, BOOK, _make_book, devices=DEVICES))
register(Case(GROUP, BOOK_CACHED, _make_book_cached, devices=DEVICES))
# No goal against it: the stricter lower bound of the speed-up over the cached path, shown beside it.
register(Case(GROUP, BOOK_READY, _make_book_ready, devices=DEVICES))
_GOALS = {BOOK: 50.0, BOOK_CACHED: 5.0}  # issue 3, item 7
register(Case(GROUP, "torchlite CandidateDataset augment='sample'", _make_sample, targets=_GOALS, devices=DEVICES))
register(
    Case(GROUP, "torchlite augment='batch' + BatchAugment3d (1 affine3d)", _make_batch, targets=_GOALS,
         devices=DEVICES)
)
register(Case(GROUP_WORKERS, BOOK, _make_book_workers, devices=DEVICES))
register(Case(GROUP_WORKERS, BOOK_CACHED, _make_book_cached_workers, devices=DEVICES))
register(Case(GROUP_WORKERS, BOOK_READY, _make_book_ready_workers, devices=DEVICES))
register(
    Case(GROUP_WORKERS, "torchlite CandidateDataset augment='sample'", _make_sample_workers,
         targets=_GOALS, devices=DEVICES)
)
register(
    Case(GROUP_WORKERS, "torchlite augment='batch': workers crop, BatchAugment3d on the batch", _make_batch_workers,
         targets=_GOALS, devices=DEVICES)
)
