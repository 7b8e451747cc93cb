"""`torchlite train cls|seg|mal`: train the nodule classifier, the U-Net
segmentation or the malignancy model (the book's chapters 11-14).

Single process: ``torchlite train cls --data LUNA16_DIR --out runs/cls``.
Several GPUs or nodes: ``torchrun --nproc-per-node N -m torchlite train ...``
(see :mod:`torchlite.train.distributed` for the multi-node arguments).
``--batch-size`` is per process; the global batch is N times larger.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from torchlite.data.synth.default import DEFAULT_SYNTH_SCANS
from torchlite.train.config import DEFAULTS, TASKS

log = logging.getLogger(__name__)

def _per_task(field: str) -> str:
    return ", ".join(f"{t} {getattr(DEFAULTS[t], field)}" for t in TASKS)


# Appended to the help of options whose default is said in words: it
# formats to nothing and stops ArgumentDefaultsHelpFormatter from adding
# "(default: None)".
_WORDS = "%(default).0s"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("task", choices=TASKS, help="cls: nodule classifier; seg: U-Net segmentation; mal: malignancy")
    p.add_argument("--data", metavar="DIR", default=None,
                   help="LUNA16 folder (subset*/, candidates.csv, annotations.csv); default: a synthetic dataset "
                        f"of {DEFAULT_SYNTH_SCANS} small scans under $TORCHLITE_CACHE or ~/.cache/torchlite, "
                        "generated on first use" + _WORDS)
    p.add_argument("--out", metavar="DIR", default=None,
                   help="run folder: last.pt, best.pt, metrics.jsonl (default: runs/TASK)" + _WORDS)
    p.add_argument("--epochs", type=int, default=1, help="number of epochs (the book's default)")
    p.add_argument("--batch-size", type=int, default=None,
                   help=f"samples per step and process (default: the book's, {_per_task('batch_size')})" + _WORDS)
    p.add_argument(
        "--num-workers",
        type=int,
        default=min(4, os.cpu_count() or 1),
        help="DataLoader worker processes (0: load in-process); the default is min(4, CPU count)",
    )
    p.add_argument("--epoch-samples", type=int, default=None,
                   help=f"training samples per epoch (default: the book's, {_per_task('epoch_samples')})" + _WORDS)
    p.add_argument("--val-stride", type=int, default=10, help="every N-th series (sorted uids) is validation")
    p.add_argument("--balanced", type=int, default=1, metavar="RATIO",
                   help="cls: non-nodules per nodule in training (0: the unbalanced candidate list)")
    p.add_argument("--val-threshold", default=None, metavar="P|prior",
                   help="cls: validation candidates with nodule probability above P count as nodules in precision, "
                        "recall and F1 (default: the book's 0.5); prior: the probability that means 0.5 at the "
                        "training series' natural nodule ratio, for a model trained --balanced (from training "
                        "counts only)" + _WORDS)
    p.add_argument("--augmented", action="store_true", help="every augmentation below (the book's --augmented)")
    p.add_argument("--augment-flip", action="store_true", help="random flips of each axis")
    p.add_argument("--augment-offset", action="store_true", help="random offset (0.1 cls/mal, 0.03 seg)")
    p.add_argument("--augment-scale", action="store_true", help="random scale, 1 +- 0.2")
    p.add_argument("--augment-rotate", action="store_true", help="random rotation in the slice plane")
    p.add_argument("--augment-noise", action="store_true", help="Gaussian noise, 25 HU")
    p.add_argument("--augment-on", choices=("sample", "batch"), default="sample",
                   help="cls/mal: augment each sample from the scan in the DataLoader workers (sample_patches3d) "
                        "or each batch on the device (affine3d; fast on GPU)")
    p.add_argument("--lr", type=float, default=None, help=f"learning rate (default: {_per_task('lr')})" + _WORDS)
    p.add_argument("--optimizer", choices=("sgd", "adam"), default=None,
                   help=f"SGD (momentum 0.99) or Adam (default: {_per_task('optimizer')})" + _WORDS)
    p.add_argument("--lr-schedule", choices=("constant", "cosine"), default="constant",
                   help="constant: the book's; cosine: decay to 0 over --lr-horizon epochs, per step, after "
                        "--lr-warmup epochs of linear warmup")
    p.add_argument("--lr-warmup", type=float, default=0.0, metavar="EPOCHS",
                   help="cosine: linear warmup over this many epochs (fractions allowed)")
    p.add_argument("--lr-horizon", type=int, default=None, metavar="EPOCHS",
                   help="cosine: the epochs the decay spans (default: --epochs); give the final count to train "
                        "in pieces with --resume" + _WORDS)
    p.add_argument("--ema", type=float, default=None, metavar="DECAY",
                   help="validate and checkpoint an exponential moving average of the weights, updated every "
                        "step with this decay (e.g. 0.99; warmed up as min(DECAY, (1+n)/(10+n)))" + _WORDS)
    p.add_argument("--finetune", metavar="CKPT", default=None,
                   help="mal: start from this nodule classifier checkpoint (its head is re-initialized)" + _WORDS)
    p.add_argument("--finetune-depth", type=int, default=1, metavar="K",
                   help="mal with --finetune: train the last K blocks counted from the head (1: head only)")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available" + _WORDS)
    p.add_argument("--memory-format", choices=("auto", "contiguous", "channels_last"), default="auto",
                   help="model memory format; auto: channels-last on CPU (several times faster there for cls/mal's "
                        "Conv3d, ~1.1-1.3x for seg's U-Net), contiguous on CUDA")
    p.add_argument("--amp", action="store_true", help="autocast: float16 on CUDA (with a grad scaler), bfloat16 on CPU")
    p.add_argument("--seed", type=int, default=0, help="seeds model init, sample order and augmentation")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/last.pt (same arguments; --epochs may grow)")
    p.add_argument("--tb", metavar="DIR", default=None, help="TensorBoard log folder (default: OUT/tb)" + _WORDS)
    p.add_argument("--no-tb", action="store_true", help="no TensorBoard logging")
    p.add_argument("--cache-dir", metavar="DIR", default=None,
                   help="where scans that cannot be memory-mapped are converted (default: under --data)" + _WORDS)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _fill_defaults(args: argparse.Namespace) -> None:
    d = DEFAULTS[args.task]
    for name in ("batch_size", "epoch_samples", "lr", "optimizer"):
        if getattr(args, name) is None:
            setattr(args, name, getattr(d, name))
    if args.out is None:
        args.out = os.path.join("runs", args.task)
    if args.no_tb:
        args.tb = None
    elif args.tb is None:
        args.tb = os.path.join(args.out, "tb")
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    for name in ("epochs", "batch_size", "epoch_samples"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.lr_schedule == "cosine" and args.lr_horizon is None:
        args.lr_horizon = args.epochs
    if args.lr_horizon is not None and args.lr_horizon < 1:
        raise ValueError(f"--lr-horizon must be >= 1, got {args.lr_horizon}")
    if args.lr_schedule != "cosine" and (args.lr_horizon is not None or args.lr_warmup):
        raise ValueError("--lr-horizon and --lr-warmup are for --lr-schedule cosine")
    if not 0.0 <= args.lr_warmup < (args.lr_horizon or args.epochs):
        raise ValueError(f"--lr-warmup must be in [0, --lr-horizon), got {args.lr_warmup}")
    if args.ema is not None and not 0.0 < args.ema < 1.0:
        raise ValueError(f"--ema must be in (0, 1), got {args.ema}")
    if args.val_threshold is not None:
        if args.task != "cls":
            raise ValueError("--val-threshold is for `train cls`")
        if args.val_threshold != "prior":
            try:
                value = float(args.val_threshold)
            except ValueError:
                value = -1.0
            if not 0.0 <= value < 1.0:
                raise ValueError(f"--val-threshold must be a probability in [0, 1) or 'prior', "
                                 f"got {args.val_threshold!r}")
    if args.num_workers < 0:
        raise ValueError(f"--num-workers must be >= 0, got {args.num_workers}")
    if args.finetune and args.task != "mal":
        raise ValueError("--finetune is for `train mal` (start from a nodule classifier)")


def _data(args: argparse.Namespace, world) -> Path:
    from torchlite.data.synth.default import resolve_data_dir

    # Only rank 0 writes the default dataset; the others wait at a barrier.
    return resolve_data_dir(args.data, create=world.is_main, progress=not args.no_progress)


def run(args: argparse.Namespace) -> int:
    from torchlite.train import distributed

    try:
        _fill_defaults(args)
    except ValueError as e:
        log.error("%s", e)
        return 2
    args.data_dir = None  # the folder actually used, filled below (kept in checkpoints)
    world = distributed.from_env()
    import torch

    distributed.init(world, torch.device(args.device))
    code = _train(args, world)
    if world.distributed:
        distributed.exit_worker(code)
    return code


def _train(args: argparse.Namespace, world) -> int:
    import torch.distributed as dist

    from torchlite.data.datasets import LunaSource
    from torchlite.train import distributed
    from torchlite.train.loop import Trainer
    from torchlite.train.tasks import make_task

    try:
        if world.is_main:
            data = _data(args, world)
        if world.distributed:
            dist.barrier()
            data = _data(args, world)
        args.data_dir = str(data)
        trainer = Trainer(make_task(args), args, LunaSource(data, cache_dir=args.cache_dir), world)
        if args.resume:
            trainer.resume()
        record = trainer.run()
    except (ValueError, FileNotFoundError) as e:
        log.error("%s", e)
        return 2
    finally:
        distributed.shutdown()
    if world.is_main and record:
        _print_summary(args.task, record, trainer)
    return 0


def _print_summary(task: str, record: dict, trainer) -> None:
    keys = ("loss", "precision", "recall", "f1", "auc") if task != "seg" else (
        "loss", "dice", "precision", "recall", "fp_per_label_pixel")
    rows = [("", *keys)]
    for half in ("train", "val"):
        rows.append((half, *(_fmt(record[half].get(k)) for k in keys)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    best = trainer.best
    lines.append(f"epoch {record['epoch']}, {record['samples_seen']} samples seen; best {best['metric']} "
                 f"{_fmt(best['value'])} at epoch {best['epoch']}; checkpoints in {trainer.out}")
    print("\n".join(lines))


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4f}"
