"""torchlite.dice_loss against the book's composite (torchlite/ops/reference.py).

The truth is the reference evaluated in float64 on the same values: the
operator accumulates in float32, so its error against exact sums is what is
bounded here, whatever dtype pred has.
"""

import pytest
import torch

from torchlite.ops.dice import DiceLoss, dice_loss
from torchlite.ops.reference import dice_loss_reference

OP = torch.ops.torchlite.dice_loss
FWD = torch.ops.torchlite._dice_loss_forward
BWD = torch.ops.torchlite._dice_loss_backward

LABEL_KINDS = ("bool", "uint8", "float", "soft")
# Tolerances for pred's dtype: the loss (always float32 accumulation) and the
# gradient (rounded to pred's dtype).
LOSS_TOL = {torch.float32: 2e-6, torch.float16: 2e-6, torch.bfloat16: 2e-6, torch.float64: 1e-12}
GRAD_RTOL = {torch.float32: 1e-5, torch.float16: 1e-3, torch.bfloat16: 8e-3, torch.float64: 1e-12}


def make_inputs(shape, kind, dtype=torch.float32, seed=0, positive=0.3):
    g = torch.Generator().manual_seed(seed)
    pred = torch.rand(shape, generator=g, dtype=torch.float64).to(dtype)
    mask = torch.rand(shape, generator=g) < positive
    if kind == "bool":
        label = mask
    elif kind == "uint8":
        label = mask.to(torch.uint8)
    elif kind == "float":
        label = mask.float()
    elif kind == "soft":
        label = torch.rand(shape, generator=g)
    else:
        raise ValueError(kind)
    return pred, label


def exact(pred, label, **kw):
    """The reference in float64, with its float64 gradient."""
    p = pred.detach().double().requires_grad_()
    loss = dice_loss_reference(p, label.double(), **kw)
    return loss, p


def _max_abs(t):
    return (t.abs().max().item() if t.numel() else 0.0) or 1.0


def check_against_reference(pred, label, eps=1.0, fn_weight=0.0, upstream=None):
    p = pred.detach().clone().requires_grad_()
    loss = dice_loss(p, label, eps=eps, fn_weight=fn_weight)
    want, pw = exact(pred, label, eps=eps, fn_weight=fn_weight)
    acc = torch.float64 if pred.dtype == torch.float64 else torch.float32
    assert loss.dtype == acc and loss.shape == (pred.shape[0],)
    tol = LOSS_TOL[pred.dtype] * max(1.0, 1.0 + fn_weight)
    torch.testing.assert_close(loss.double(), want.detach(), rtol=tol, atol=tol)
    if upstream is None:
        upstream = torch.rand(pred.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    (loss * upstream.to(loss.dtype)).sum().backward()
    (want * upstream).sum().backward()
    assert p.grad.dtype == pred.dtype and p.grad.shape == pred.shape
    scale = _max_abs(pw.grad)
    torch.testing.assert_close(p.grad.double(), pw.grad, rtol=GRAD_RTOL[pred.dtype], atol=GRAD_RTOL[pred.dtype] * scale)
    return loss, p.grad


# --- values and gradients ----------------------------------------------------


@pytest.mark.parametrize("kind", LABEL_KINDS)
@pytest.mark.parametrize("fn_weight", [0.0, 8.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_matches_reference(kind, fn_weight, dtype):
    pred, label = make_inputs((3, 1, 17, 23), kind, dtype)
    check_against_reference(pred, label, fn_weight=fn_weight)


@pytest.mark.parametrize(
    "shape",
    [(1, 1), (4,), (1, 5), (2, 3, 5, 7), (2, 1, 6, 7, 9), (2, 8192), (2, 8193), (1, 3 * 8192 + 77), (5, 1, 1, 1, 63)],
    ids=str,
)
@pytest.mark.parametrize("kind", ["bool", "soft"])
def test_shapes(shape, kind):
    # Chunk boundaries (8192 elements), lane tails and 1-element samples.
    pred, label = make_inputs(shape, kind, seed=sum(shape))
    check_against_reference(pred, label, fn_weight=8.0)


@pytest.mark.parametrize("eps", [0.0, 1e-3, 1.0, 10.0])
def test_eps(eps):
    pred, label = make_inputs((2, 1, 9, 9), "float")
    check_against_reference(pred, label, eps=eps, fn_weight=8.0)


def test_label_dtypes_agree():
    pred, mask = make_inputs((3, 1, 31, 33), "bool")
    losses = [dice_loss(pred, mask.to(dt), fn_weight=8.0) for dt in (torch.bool, torch.uint8, torch.float16, torch.float32)]
    for other in losses[1:]:
        torch.testing.assert_close(other, losses[0], rtol=1e-6, atol=1e-6)


def test_soft_labels_need_the_squared_sum():
    # dice(p*l, l) needs sum(p*l^2); with binary-only arithmetic (sum(p*l))
    # the recall term of a soft label would be far off.
    pred, label = make_inputs((2, 1, 16, 16), "soft")
    loss = dice_loss(pred, label, fn_weight=8.0)
    want, _ = exact(pred, label, fn_weight=8.0)
    torch.testing.assert_close(loss.double(), want.detach(), rtol=1e-5, atol=1e-5)
    # ...and the input is one where that shortcut would be wrong.
    pl = (pred.double() * label.double()).flatten(1)
    assert not torch.allclose(pl.sum(1), (pl * label.double().flatten(1)).sum(1), rtol=1e-2)


def test_sums_are_the_four_sums():
    pred, label = make_inputs((3, 2, 11, 13), "soft")
    loss, sums = FWD(pred, label, 1.0, 8.0)
    p, l = pred.double().flatten(1), label.double().flatten(1)
    want = torch.stack([(p * l).sum(1), p.sum(1), l.sum(1), (p * l * l).sum(1)], dim=1)
    assert sums.dtype == torch.float32 and sums.shape == (3, 4)
    torch.testing.assert_close(sums.double(), want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(loss, OP(pred, label, 1.0, 8.0), rtol=0, atol=0)


def test_book_training_loss():
    # SegmentationTrainingApp.computeBatchLoss: diceLoss(p, l).mean() + fnLoss.mean() * 8,
    # written out from the book's formula.
    pred, label = make_inputs((4, 1, 32, 32), "bool")
    p, l = pred.double(), label.double()

    def book_dice(pp, ll, eps=1.0):
        return 1 - (2 * (pp * ll).sum((1, 2, 3)) + eps) / (pp.sum((1, 2, 3)) + ll.sum((1, 2, 3)) + eps)

    want = book_dice(p, l).mean() + book_dice(p * l, l).mean() * 8
    got = DiceLoss(fn_weight=8.0)(pred, label)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


def test_empty_label_and_pred():
    pred = torch.zeros(2, 1, 8, 8, requires_grad=True)
    label = torch.zeros(2, 1, 8, 8, dtype=torch.bool)
    loss = dice_loss(pred, label, fn_weight=8.0)
    assert torch.equal(loss, torch.zeros(2))  # eps/eps: a perfect empty prediction
    loss.sum().backward()
    assert torch.isfinite(pred.grad).all()
    check_against_reference(pred.detach(), label, fn_weight=8.0)
    # An empty label with a nonzero prediction, and the reverse.
    p, _ = make_inputs((2, 1, 8, 8), "float")
    check_against_reference(p, label, fn_weight=8.0)
    check_against_reference(torch.zeros(2, 1, 8, 8), label.logical_not(), fn_weight=8.0)


def test_batch_of_zero():
    pred = torch.rand(0, 1, 4, 4, requires_grad=True)
    loss = dice_loss(pred, torch.zeros(0, 1, 4, 4), fn_weight=8.0)
    assert loss.shape == (0,) and loss.dtype == torch.float32
    loss.sum().backward()
    assert pred.grad.shape == pred.shape


def test_samples_of_zero_elements():
    # No elements: every sum is 0 and the loss is 1 - eps/eps = 0, as in the composite.
    pred = torch.rand(3, 0, requires_grad=True)
    label = torch.zeros(3, 0)
    loss = dice_loss(pred, label, fn_weight=8.0)
    torch.testing.assert_close(loss, dice_loss_reference(pred.detach(), label, fn_weight=8.0))
    loss.sum().backward()
    assert pred.grad.shape == (3, 0)


def test_non_contiguous_inputs():
    pred, label = make_inputs((4, 2, 20, 24), "bool")
    want = dice_loss(pred, label, fn_weight=8.0)
    cases = [
        (pred.transpose(2, 3).contiguous().transpose(2, 3), label.transpose(2, 3).contiguous().transpose(2, 3)),
        (pred.contiguous(memory_format=torch.channels_last), label),
        (torch.cat([pred, pred], dim=3)[..., :24], torch.cat([label, label], dim=3)[..., :24]),
    ]
    for p, l in cases:
        assert not (p.is_contiguous() and l.is_contiguous())
        assert torch.equal(dice_loss(p, l, fn_weight=8.0), want)
    # A broadcast (stride-0) label; and strided pred with gradient.
    row = label[:1]
    check_against_reference(pred[:, :, ::2, 1::3], label[:, :, ::2, 1::3], fn_weight=8.0)
    assert torch.equal(dice_loss(pred, row.expand_as(pred)), dice_loss(pred, row.expand_as(pred).contiguous()))


def test_thread_count_independence():
    pred, label = make_inputs((2, 1, 48, 64, 64), "soft", seed=5)
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            p = pred.clone().requires_grad_()
            loss = dice_loss(p, label, fn_weight=8.0)
            loss.sum().backward()
            results.append((loss, p.grad))
    finally:
        torch.set_num_threads(before)
    for loss, grad in results[1:]:
        assert torch.equal(loss, results[0][0])
        assert torch.equal(grad, results[0][1])


# --- autograd ------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["bool", "soft"])
@pytest.mark.parametrize("fn_weight", [0.0, 8.0])
def test_gradcheck(kind, fn_weight):
    # float64 pred is accepted (accumulated in float64) so gradcheck can use
    # finite differences at full precision.
    pred, label = make_inputs((2, 1, 3, 4), kind, torch.float64)
    if kind == "soft":
        label = label.double()
    pred.requires_grad_()
    assert torch.autograd.gradcheck(lambda p: dice_loss(p, label, eps=0.5, fn_weight=fn_weight), (pred,))


def test_double_backward_raises():
    pred, label = make_inputs((2, 1, 4, 4), "float", torch.float64)
    pred.requires_grad_()
    (grad,) = torch.autograd.grad(dice_loss(pred, label, fn_weight=8.0).sum(), pred, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward"):
        grad.sum().backward()


def test_label_gradient_raises():
    pred, label = make_inputs((2, 1, 4, 4), "soft")
    with pytest.raises(RuntimeError, match="`label`"):
        dice_loss(pred.requires_grad_(), label.requires_grad_())


def test_no_grad_and_inference_mode():
    pred, label = make_inputs((2, 1, 9, 9), "bool")
    want = dice_loss(pred, label, fn_weight=8.0)
    with torch.no_grad():
        assert torch.equal(dice_loss(pred.requires_grad_(), label, fn_weight=8.0), want.detach())
    with torch.inference_mode():
        assert torch.equal(dice_loss(pred, label, fn_weight=8.0), want.detach())


# --- torch.library, torch.compile, TorchScript -----------------------------------


def test_opcheck():
    pred, label = make_inputs((2, 1, 5, 6), "soft")
    for kind_label in (label, label > 0.5):
        torch.library.opcheck(OP, (pred.clone().requires_grad_(), kind_label, 1.0, 8.0))
        torch.library.opcheck(OP, (pred, kind_label, 0.5, 0.0))
        torch.library.opcheck(FWD, (pred, kind_label, 1.0, 8.0))
    _, sums = FWD(pred, label, 1.0, 8.0)
    torch.library.opcheck(BWD, (torch.rand(2), sums, label, 1.0, 8.0, torch.float32))
    torch.library.opcheck(BWD, (torch.rand(2), sums, label > 0.5, 1.0, 0.0, torch.bfloat16))


def test_torch_compile_fullgraph_with_backward():
    pred, label = make_inputs((2, 1, 8, 8), "bool")

    def step(p, l):
        return dice_loss(p, l, fn_weight=8.0).mean()

    compiled = torch.compile(step, fullgraph=True, dynamic=False)
    p1, p2 = pred.clone().requires_grad_(), pred.clone().requires_grad_()
    got = compiled(p1, label)
    got.backward()
    want = step(p2, label)
    want.backward()
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(p1.grad, p2.grad)


def test_torchscript_save_load(tmp_path):
    @torch.jit.script
    def loss_fn(pred: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return torch.ops.torchlite.dice_loss(pred, label, 1.0, 8.0).mean()

    path = tmp_path / "dice.pt"
    torch.jit.save(loss_fn, str(path))
    loaded = torch.jit.load(str(path))
    pred, label = make_inputs((3, 1, 10, 10), "bool")
    p1, p2 = pred.clone().requires_grad_(), pred.clone().requires_grad_()
    got = loaded(p1, label)
    got.backward()
    want = dice_loss(p2, label, fn_weight=8.0).mean()
    want.backward()
    assert torch.equal(got, want)
    assert torch.equal(p1.grad, p2.grad)


# --- DiceLoss --------------------------------------------------------------------


def test_dice_loss_module_reductions():
    pred, label = make_inputs((3, 1, 7, 7), "float")
    per_sample = dice_loss(pred, label, eps=0.5, fn_weight=2.0)
    assert torch.equal(DiceLoss(eps=0.5, fn_weight=2.0, reduction="none")(pred, label), per_sample)
    assert torch.equal(DiceLoss(eps=0.5, fn_weight=2.0, reduction="sum")(pred, label), per_sample.sum())
    assert torch.equal(DiceLoss(eps=0.5, fn_weight=2.0)(pred, label), per_sample.mean())
    assert "fn_weight=2.0" in repr(DiceLoss(eps=0.5, fn_weight=2.0))
    with pytest.raises(ValueError, match="reduction"):
        DiceLoss(reduction="max")
    with pytest.raises(ValueError, match="eps"):
        DiceLoss(eps=-1.0)


# --- bad inputs -------------------------------------------------------------------


def test_bad_inputs():
    pred, label = make_inputs((2, 1, 4, 4), "float")
    with pytest.raises(RuntimeError, match=r"`pred` and `label` must have the same shape.*\[2, 1, 4, 4\].*\[2, 1, 4, 5\]"):
        dice_loss(pred, torch.zeros(2, 1, 4, 5))
    with pytest.raises(RuntimeError, match="same shape"):
        dice_loss(pred, label[:1])  # no broadcasting over the batch either
    with pytest.raises(TypeError, match="`pred` must be Float or Half or BFloat16 or Double, got Int"):
        dice_loss(pred.int(), label)
    with pytest.raises(TypeError, match="`label` must be .*, got Int"):
        dice_loss(pred, label.int())
    with pytest.raises(TypeError, match="`label` must be .*, got Long"):
        dice_loss(pred, label.long())
    with pytest.raises(RuntimeError, match="`label` is on meta but `pred` is on cpu"):
        dice_loss(pred, label.to("meta"))
    with pytest.raises(RuntimeError, match="`label` is on cpu but `pred` is on meta"):
        dice_loss(pred.to("meta"), label)
    with pytest.raises(RuntimeError, match="`pred` must have a batch dimension"):
        dice_loss(torch.tensor(0.5), torch.tensor(1.0))
    with pytest.raises(RuntimeError, match="`eps` must be finite and >= 0"):
        dice_loss(pred, label, eps=-1.0)
    with pytest.raises(RuntimeError, match="`fn_weight` must be finite"):
        dice_loss(pred, label, fn_weight=float("inf"))


def test_bad_backward_inputs():
    pred, label = make_inputs((2, 1, 4, 4), "float")
    _, sums = FWD(pred, label, 1.0, 0.0)
    g = torch.ones(2)
    with pytest.raises(RuntimeError, match=r"`grad` must have shape \(2,\)"):
        BWD(torch.ones(3), sums, label, 1.0, 0.0, torch.float32)
    with pytest.raises(RuntimeError, match=r"`sums` must have shape \(2, 4\)"):
        BWD(g, sums[:, :3], label, 1.0, 0.0, torch.float32)
    with pytest.raises(RuntimeError, match="`grad` must be Double for dtype Double"):
        BWD(g, sums, label, 1.0, 0.0, torch.float64)
    with pytest.raises(RuntimeError, match="`dtype` must be"):
        BWD(g, sums, label, 1.0, 0.0, torch.int32)
    with pytest.raises(TypeError, match="`label` must be"):
        BWD(g, sums, label.int(), 1.0, 0.0, torch.float32)


# --- CUDA (runs only where a GPU is present) -----------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("kind", LABEL_KINDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_cuda_matches_reference(kind, dtype):
    for shape in [(3, 1, 17, 23), (2, 1, 40, 50, 60), (1, 1), (2, 0)]:
        pred, label = make_inputs(shape, kind, dtype)
        loss_cpu, grad_cpu = check_against_reference(pred, label, fn_weight=8.0)
        p = pred.cuda().requires_grad_()
        loss = dice_loss(p, label.cuda(), fn_weight=8.0)
        (loss * torch.rand(shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(3)).to(loss).cuda()).sum().backward()
        torch.testing.assert_close(loss.cpu(), loss_cpu, rtol=LOSS_TOL[dtype] * 9, atol=LOSS_TOL[dtype] * 9)
        torch.testing.assert_close(p.grad.cpu(), grad_cpu, rtol=GRAD_RTOL[dtype], atol=GRAD_RTOL[dtype] * _max_abs(grad_cpu))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_deterministic_and_checks():
    pred, label = make_inputs((2, 1, 64, 64, 64), "soft")
    pred, label = pred.cuda(), label.cuda()
    assert torch.equal(dice_loss(pred, label, fn_weight=8.0), dice_loss(pred, label, fn_weight=8.0))
    assert dice_loss(pred[:0], label[:0]).shape == (0,)
    with pytest.raises(RuntimeError, match="`label` is on cpu"):
        dice_loss(pred, label.cpu())
