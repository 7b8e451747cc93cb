"""torchlite.crop3d as a torch operator: opcheck, torch.compile, TorchScript,
error messages for bad input (eager, fake and C++), and its benchmark cases."""

import pytest
import torch
from _crop_inputs import assert_same, make_volume, random_centers

from torchlite.ops.crop import crop3d
from torchlite.ops.reference import crop3d_reference

OP = torch.ops.torchlite.crop3d
OP_OUT = torch.ops.torchlite.crop3d_out


# --- torch.library / compile / TorchScript -------------------------------------------


def test_opcheck():
    volume = make_volume((8, 9, 10), seed=20)
    centers = random_centers(volume.shape, (3, 4, 5), 6, seed=21)
    for args in [
        (volume, centers, [3, 4, 5], -1000.0, False, None),
        (volume.float().transpose(0, 2), centers, [3, 4, 5], 0.0, True, [-10.0, 10.0]),
        (volume, centers[:0], [3, 4, 5], -1000.0, False, None),
    ]:
        torch.library.opcheck(OP, args)
        out = torch.empty(args[1].shape[0], 1, 3, 4, 5)
        torch.library.opcheck(OP_OUT, (*args, out))


def test_torch_compile_fullgraph():
    volume = make_volume((8, 9, 10), seed=22)
    centers = random_centers(volume.shape, (3, 4, 5), 6, seed=23)

    def f(v, c, buf):
        a = crop3d(v, c, (3, 4, 5), clip=(-100.0, 100.0))
        crop3d(v, c, (3, 4, 5), clamp=True, out=buf)
        return a * 2, buf + 1

    buf = torch.empty(6, 1, 3, 4, 5)
    a, b = torch.compile(f, fullgraph=True)(volume, centers, buf)
    ref_a = crop3d_reference(volume, centers, (3, 4, 5), clip=(-100.0, 100.0))
    ref_b = crop3d_reference(volume, centers, (3, 4, 5), clamp=True)
    assert_same(a, ref_a * 2)
    assert_same(b, ref_b + 1)
    assert_same(buf, ref_b)  # the mutation reached the caller's buffer


class _Scripted(torch.nn.Module):
    def forward(self, volume: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
        return torch.ops.torchlite.crop3d(volume, centers, [3, 4, 5], -1000.0, True, [-50.0, 900.0])


def test_torchscript_save_load(tmp_path):
    volume = make_volume((8, 9, 10), seed=24)
    centers = random_centers(volume.shape, (3, 4, 5), 7, seed=25)
    scripted = torch.jit.script(_Scripted())
    path = tmp_path / "crop.pt"
    torch.jit.save(scripted, str(path))
    loaded = torch.jit.load(str(path))
    want = crop3d_reference(volume, centers, (3, 4, 5), clamp=True, clip=(-50.0, 900.0))
    assert_same(loaded(volume, centers), want)


# --- bad inputs ----------------------------------------------------------------------

V = make_volume((6, 7, 8))
C = torch.tensor([[1, 2, 3]])

BAD = [
    ("volume-dtype", dict(volume=V.double()), TypeError, r"crop3d: `volume` must be Short or Float"),
    ("volume-uint8", dict(volume=V.to(torch.uint8)), TypeError, r"`volume` must be Short or Float"),
    ("volume-ndim", dict(volume=V[0]), RuntimeError, r"`volume` must be 3-D \(D, H, W\)"),
    ("centers-dtype", dict(centers=C.int()), TypeError, r"`centers` must be Long"),
    ("centers-N2", dict(centers=C[:, :2]), RuntimeError, r"`centers` must have shape \(N, 3\)"),
    ("centers-1d", dict(centers=C[0]), RuntimeError, r"`centers` must have shape \(N, 3\)"),
    ("size-2", dict(size=[3, 3]), RuntimeError, r"`size` must have 3 entries"),
    ("size-zero", dict(size=[3, 0, 3]), RuntimeError, r"`size` entries must be positive"),
    ("size-negative", dict(size=[3, 3, -2]), RuntimeError, r"`size` entries must be positive"),
    ("clip-1", dict(clip=[5.0]), RuntimeError, r"`clip` must have 2 entries"),
    ("clip-3", dict(clip=[1.0, 2.0, 3.0]), RuntimeError, r"`clip` must have 2 entries"),
    ("clip-lo>hi", dict(clip=[10.0, -10.0]), RuntimeError, r"`clip` must satisfy lo <= hi"),
    ("clip-nan", dict(clip=[float("nan"), 1.0]), RuntimeError, r"`clip` must satisfy lo <= hi"),
]


def _call(volume=V, centers=C, size=(3, 3, 3), clip=None, out=None):
    return crop3d(volume, centers, size, clip=clip, out=out)


@pytest.mark.parametrize("name,kw,exc,match", BAD, ids=[b[0] for b in BAD])
def test_bad_inputs(name, kw, exc, match):
    with pytest.raises(exc, match=match):
        _call(**kw)
    # The out= form checks the same arguments, under its own name.
    with pytest.raises(exc, match=match.replace("crop3d:", "crop3d_out:")):
        _call(**kw, out=torch.empty(1, 1, 3, 3, 3))


@pytest.mark.parametrize("name,kw,exc,match", BAD, ids=[b[0] for b in BAD])
def test_bad_inputs_fake(name, kw, exc, match):
    # Under FakeTensor (torch.compile) the fake kernel rejects the same calls.
    from torch._subclasses.fake_tensor import FakeTensorMode

    mode = FakeTensorMode()
    args = {"volume": V, "centers": C, **kw}
    args = {k: mode.from_tensor(v) if isinstance(v, torch.Tensor) else v for k, v in args.items()}
    with mode, pytest.raises(exc, match=match):
        _call(**args)


BAD_OUT = [
    ("out-shape", torch.empty(1, 3, 3, 3), RuntimeError, r"`out` must have shape \(N, 1, d, h, w\)"),
    ("out-batch", torch.empty(2, 1, 3, 3, 3), RuntimeError, r"`out` must have shape"),
    ("out-dtype", torch.empty(1, 1, 3, 3, 3, dtype=torch.float64), TypeError, r"`out` must be Float"),
    ("out-noncontig", torch.empty(1, 1, 3, 3, 6)[..., ::2], RuntimeError, r"`out` must be contiguous"),
]


@pytest.mark.parametrize("name,out,exc,match", BAD_OUT, ids=[b[0] for b in BAD_OUT])
def test_bad_out(name, out, exc, match):
    with pytest.raises(exc, match=r"crop3d_out: " + match):
        _call(out=out)


def test_out_aliasing_the_volume_is_refused():
    volume = torch.zeros(4, 4, 27)
    out = volume.view(-1)[:27].view(1, 1, 3, 3, 3)
    with pytest.raises(RuntimeError, match=r"`out` must not share memory with `volume`"):
        crop3d(volume, C, (3, 3, 3), out=out)


def test_device_mismatch():
    meta_c = C.to("meta")
    # A meta argument dispatches to the fake kernel...
    with pytest.raises(RuntimeError, match=r"`centers` is on meta but `volume` is on cpu"):
        crop3d(V, meta_c, (3, 3, 3))
    with pytest.raises(RuntimeError, match=r"`out` is on meta but `volume` is on cpu"):
        crop3d(V, C, (3, 3, 3), out=torch.empty(1, 1, 3, 3, 3, device="meta"))
    # ...and the C++ kernel makes the same check when reached directly.
    cpu = torch._C.DispatchKeySet(torch._C.DispatchKey.CPU)
    with pytest.raises(RuntimeError, match=r"torchlite.crop3d: `centers` is on meta but `volume` is on cpu"):
        OP.default.redispatch(cpu, V, meta_c, [3, 3, 3], -1000.0, False, None)
    with pytest.raises(RuntimeError, match=r"torchlite.crop3d_out: `out` is on meta but `volume` is on cpu"):
        OP_OUT.default.redispatch(cpu, V, C, [3, 3, 3], -1000.0, False, None, torch.empty(1, 1, 3, 3, 3, device="meta"))


def test_meta_inputs_give_shapes():
    got = crop3d(V.to("meta"), torch.empty(5, 3, dtype=torch.int64, device="meta"), (3, 4, 5))
    assert got.device.type == "meta" and got.shape == (5, 1, 3, 4, 5) and got.dtype == torch.float32


def test_numpy_volume_is_refused_with_a_hint():
    with pytest.raises(TypeError, match=r"`volume` must be a torch.Tensor.*torch.from_numpy"):
        crop3d(V.numpy(), C, (3, 3, 3))


# --- benchmark cases -------------------------------------------------------------------


def test_benchmark_cases_build_and_run():
    from torchlite.bench import registry
    from torchlite.bench.cases import crop3d as cases

    mine = [c for c in registry.all_cases() if c.group == cases.GROUP]
    assert [c.name for c in mine][:2] == [
        "reference: book's per-candidate slicing (clamp=True)",
        cases.NUMPY_LOOP,
    ]
    assert len(mine) == 5
    results = {}
    for case in mine:
        results[case.name] = case.make(True, "cpu")()
    fresh = results["torchlite.crop3d (fresh output)"]
    assert fresh.shape == (cases.N_PATCHES, 1, *cases.SIZE)
    # The numpy loop and the operator crop the same thing the same way.
    assert_same(torch.from_numpy(results[cases.NUMPY_LOOP]), fresh)
    assert_same(results["torchlite.crop3d(out=preallocated)"], fresh)
    volume, centers = cases._inputs("cpu")
    want = crop3d_reference(volume, centers, cases.SIZE, fill=cases.FILL, clamp=True, clip=cases.CLIP)
    assert_same(results["reference: book's per-candidate slicing (clamp=True)"], want)
