"""dice_loss forward + backward against the book's composite and torch.compile of it.

Two workloads: the book's 2D segmentation batch (16 x 1 x 64x64 crops) and a
3D one (2 x 1 x 96^3), each with three losses: plain Dice with float labels,
the book's recall-weighted loss (fn_weight=8) with float labels, and the same
with bool masks (what the book's dataset actually yields). Every case runs
``loss.mean().backward()`` on a pred that requires grad, as training does.
"""

from __future__ import annotations

import functools

import torch

from torchlite.bench.cases.memory import write_bandwidth_case
from torchlite.bench.registry import Case, register

SHAPES = ((16, 1, 64, 64), (2, 1, 96, 96, 96))
# (variant label, fn_weight, label dtype, speed-up goal over the eager composite)
VARIANTS = (
    ("plain Dice, float labels", 0.0, torch.float32, 1.3),
    ("recall-weighted (fn_weight=8), float labels", 8.0, torch.float32, 2.5),
    ("recall-weighted (fn_weight=8), bool labels", 8.0, torch.bool, 5.0),
)
REFERENCE = "reference: book's composite (eager)"
COMPILED = "torch.compile(reference)"
OPERATOR = "torchlite.dice_loss"


@functools.lru_cache(maxsize=None)
def _cpu_inputs(shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    pred = torch.rand(shape, generator=g)
    # A sparse mask, as nodule masks are.
    label = torch.rand(shape, generator=g) < 0.1
    return pred, label


def _inputs(shape, label_dtype, device):
    pred, label = _cpu_inputs(shape)
    return pred.to(device).requires_grad_(), label.to(device=device, dtype=label_dtype)


def _fwd_bwd(loss_fn, pred, label):
    def run():
        pred.grad = None
        loss = loss_fn(pred, label).mean()
        loss.backward()
        return loss

    return run


def _loss(name: str):
    """The reference composite or the operator, imported on use (the operator loads the library)."""
    if name == "reference":
        from torchlite.ops.reference import dice_loss_reference

        return dice_loss_reference
    from torchlite.ops.dice import dice_loss

    return dice_loss


def _make_eager(loss_name, shape, fn_weight, label_dtype):
    def make(quick: bool, device: str):
        loss = _loss(loss_name)
        pred, label = _inputs(shape, label_dtype, device)
        return _fwd_bwd(lambda p, l: loss(p, l, fn_weight=fn_weight), pred, label)

    return make


def _make_compiled(shape, fn_weight, label_dtype):
    def make(quick: bool, device: str):
        reference = _loss("reference")
        pred, label = _inputs(shape, label_dtype, device)
        compiled = torch.compile(lambda p, l: reference(p, l, fn_weight=fn_weight), dynamic=False)
        run = _fwd_bwd(compiled, pred, label)
        run()  # compile forward and backward here, outside the timed region
        return run

    return make


def _register_all() -> None:
    for shape in SHAPES:
        numel = 1
        for s in shape:
            numel *= s
        for variant, fn_weight, label_dtype, goal in VARIANTS:
            group = f"dice fwd+bwd {shape} {variant}"
            label_bytes = torch.empty((), dtype=label_dtype).element_size()
            # Forward reads pred and label; backward reads label, writes grad.
            nbytes = numel * (4 + 2 * label_bytes + 4)
            devices = ("cpu", "cuda")
            args = (shape, fn_weight, label_dtype)
            register(Case(group, REFERENCE, _make_eager("reference", *args), nbytes=nbytes, devices=devices))
            register(Case(group, COMPILED, _make_compiled(*args), nbytes=nbytes, devices=devices))
            register(
                Case(
                    group,
                    OPERATOR,
                    _make_eager("operator", *args),
                    targets={REFERENCE: goal, COMPILED: 1.0},
                    nbytes=nbytes,
                    devices=devices,
                )
            )
            if numel >= 1 << 20:
                register(write_bandwidth_case(group, numel))


_register_all()
