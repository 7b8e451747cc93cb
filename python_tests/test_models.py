"""The book's networks: shapes, checkpoint compatibility, export paths."""

import pytest
import torch

from torchlite.models import LunaModel, UNetWrapper


def _book_luna_state_shapes():
    # Written out from the book's LunaModel (p2ch11/model.py): names and shapes.
    shapes = {
        "tail_batchnorm.weight": (1,), "tail_batchnorm.bias": (1,),
        "tail_batchnorm.running_mean": (1,), "tail_batchnorm.running_var": (1,),
        "tail_batchnorm.num_batches_tracked": (),
        "head_linear.weight": (2, 1152), "head_linear.bias": (2,),
    }
    chans = [(1, 8), (8, 16), (16, 32), (32, 64)]
    for b, (cin, cout) in enumerate(chans, start=1):
        shapes[f"block{b}.conv1.weight"] = (cout, cin, 3, 3, 3)
        shapes[f"block{b}.conv1.bias"] = (cout,)
        shapes[f"block{b}.conv2.weight"] = (cout, cout, 3, 3, 3)
        shapes[f"block{b}.conv2.bias"] = (cout,)
    return shapes


def _book_unet_state_shapes():
    # The book's UNetWrapper(in_channels=7, n_classes=1, depth=3, wf=4,
    # padding=True, batch_norm=True, up_mode='upconv'): conv, relu, bn, conv,
    # relu, bn in each block's Sequential -> indices 0, 2, 3, 5.
    shapes = {}

    def bn(prefix, c):
        shapes.update({f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
                       f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()})

    def conv_block(prefix, cin, cout):
        shapes[f"{prefix}.block.0.weight"] = (cout, cin, 3, 3)
        shapes[f"{prefix}.block.0.bias"] = (cout,)
        bn(f"{prefix}.block.2", cout)
        shapes[f"{prefix}.block.3.weight"] = (cout, cout, 3, 3)
        shapes[f"{prefix}.block.3.bias"] = (cout,)
        bn(f"{prefix}.block.5", cout)

    bn("input_batchnorm", 7)
    conv_block("unet.down_path.0", 7, 16)
    conv_block("unet.down_path.1", 16, 32)
    conv_block("unet.down_path.2", 32, 64)
    shapes["unet.up_path.0.up.weight"] = (64, 32, 2, 2)
    shapes["unet.up_path.0.up.bias"] = (32,)
    conv_block("unet.up_path.0.conv_block", 64, 32)
    shapes["unet.up_path.1.up.weight"] = (32, 16, 2, 2)
    shapes["unet.up_path.1.up.bias"] = (16,)
    conv_block("unet.up_path.1.conv_block", 32, 16)
    shapes["unet.last.weight"] = (1, 16, 1, 1)
    shapes["unet.last.bias"] = (1,)
    return shapes


def _random_state(shapes):
    g = torch.Generator().manual_seed(0)
    return {k: (torch.tensor(3) if k.endswith("num_batches_tracked") else torch.rand(s, generator=g) + 0.5)
            for k, s in shapes.items()}


@pytest.mark.parametrize("model_cls,shapes_fn", [(LunaModel, _book_luna_state_shapes), (UNetWrapper, _book_unet_state_shapes)])
def test_loads_a_checkpoint_with_the_books_parameter_names(model_cls, shapes_fn):
    model = model_cls()
    state = _random_state(shapes_fn())
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == {k: tuple(s) for k, s in shapes_fn().items()}
    model.load_state_dict(state, strict=True)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_luna_model_output():
    model = LunaModel().eval()
    logits, probs = model(torch.randn(3, 1, 32, 48, 48) * 300)
    assert logits.shape == probs.shape == (3, 2)
    torch.testing.assert_close(probs.sum(1), torch.ones(3))
    torch.testing.assert_close(probs, torch.softmax(logits, 1))


def test_unet_output_is_per_pixel_probability():
    model = UNetWrapper().eval()
    out = model(torch.randn(2, 7, 64, 64) * 300)
    assert out.shape == (2, 1, 64, 64)
    assert out.min() >= 0 and out.max() <= 1
    # Fully convolutional: any multiple of 4 works (two poolings).
    assert model(torch.randn(1, 7, 96, 128)).shape == (1, 1, 96, 128)


def test_book_initialization_statistics():
    torch.manual_seed(0)
    m = LunaModel()
    w = m.block1.conv2.weight
    fan_out = w.shape[0] * 27
    # kaiming_normal_(mode='fan_out', relu): std = sqrt(2 / fan_out)
    assert abs(w.std().item() - (2 / fan_out) ** 0.5) < 0.1 * (2 / fan_out) ** 0.5


@pytest.mark.parametrize("make,shape", [(LunaModel, (2, 1, 32, 48, 48)), (UNetWrapper, (2, 7, 64, 64))])
def test_trace_script_and_export_match_eager(make, shape, tmp_path):
    torch.manual_seed(0)
    model = make().eval()
    x = torch.randn(shape) * 200
    with torch.no_grad():
        ref = model(x)
        traced = torch.jit.trace(model, x)
        scripted = torch.jit.script(model)
        exported = torch.export.export(model, (x,))
        outs = [traced(x), scripted(x), exported.module()(x)]
    torch.jit.save(scripted, tmp_path / "m.pt")
    outs.append(torch.jit.load(tmp_path / "m.pt")(x))
    for out in outs:
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
