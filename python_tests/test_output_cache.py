"""The CPU operators' output cache (csrc/memory/output_pool.h).

Outputs of 4 MB or more come from a cache of freed outputs. What must hold:
a reused block is fully overwritten (results equal the references, never a
stale value of the block's previous tensor); the tensors are ordinary
(resizable, shareable between processes, picklable); the cache obeys its
limit, and TORCHLITE_OUTPUT_CACHE_MB is checked; forked DataLoader workers
work. Counts are process-wide, so the in-process tests read differences and
the limit tests run in fresh interpreters.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from torchlite.ops import crop3d, dice_loss, output_cache_info, release_output_cache
from torchlite.ops.reference import crop3d_reference, dice_loss_reference

SIZE = (32, 48, 48)  # 64 patches: 18.9 MB of float32, well above the 4 MB floor
MB = 1 << 20


def _centers(shape, n, seed):
    g = torch.Generator().manual_seed(seed)
    # Some centers beyond the faces, so part of each batch is fill.
    return torch.stack([torch.randint(-20, d + 20, (n,), generator=g) for d in shape], dim=1)


def test_a_reused_block_holds_the_new_result_not_the_old_one():
    release_output_cache()
    shape = (40, 90, 90)
    sevens = torch.full(shape, 7, dtype=torch.int16)
    first = crop3d(sevens, _centers(shape, 64, 0), SIZE, fill=7.0)
    assert bool((first == 7).all())
    ptr = first.data_ptr()
    del first  # back to the cache

    g = torch.Generator().manual_seed(1)
    volume = torch.randint(-1200, 3000, shape, dtype=torch.int16, generator=g)
    centers = _centers(shape, 64, 2)
    before = output_cache_info()
    second = crop3d(volume, centers, SIZE, fill=-1000.0, clip=(-1000.0, 1000.0))
    after = output_cache_info()
    assert after.reuses == before.reuses + 1
    assert second.data_ptr() == ptr
    expected = crop3d_reference(volume, centers, SIZE, fill=-1000.0, clip=(-1000.0, 1000.0))
    assert torch.equal(second, expected)


def test_small_outputs_bypass_the_cache():
    release_output_cache()
    volume = torch.zeros(20, 20, 20)
    before = output_cache_info()
    out = crop3d(volume, torch.tensor([[10, 10, 10]]), (8, 8, 8))  # 2 KB
    del out
    after = output_cache_info()
    assert (after.reuses, after.fresh, after.cached_bytes) == (before.reuses, before.fresh, 0)


def test_dice_gradient_from_a_reused_block_equals_the_composite():
    release_output_cache()
    g = torch.Generator().manual_seed(3)
    label = torch.rand(2, 1, 96, 96, 96, generator=g) > 0.7  # grad: 7 MB of float32
    for trial in range(2):  # the second backward reuses the first one's gradient block
        pred = torch.rand(2, 1, 96, 96, 96, generator=g, requires_grad=True)
        dice_loss(pred, label, fn_weight=8.0).sum().backward()
        ref = pred.detach().clone().requires_grad_(True)
        dice_loss_reference(ref, label.float(), fn_weight=8.0).sum().backward()
        torch.testing.assert_close(pred.grad, ref.grad, rtol=1e-5, atol=1e-7)
        del pred
    assert output_cache_info().reuses >= 1


def test_cached_tensors_behave_like_any_tensor():
    shape = (40, 90, 90)
    volume = torch.randint(-1000, 1000, shape, dtype=torch.int16)
    out = crop3d(volume, _centers(shape, 64, 4), SIZE)
    expected = out.clone()

    buffer = io.BytesIO()
    torch.save(out, buffer)
    buffer.seek(0)
    assert torch.equal(torch.load(buffer), expected)

    out.share_memory_()  # what a DataLoader worker does to send it
    assert out.is_shared() and torch.equal(out, expected)

    grown = crop3d(volume, _centers(shape, 64, 4), SIZE)
    flat = grown.view(-1)
    flat.resize_(flat.numel() + 1000)  # storage grows through the cache's allocator
    assert torch.equal(flat[: expected.numel()].view_as(expected), expected)


def test_release_gives_everything_back():
    out = crop3d(torch.zeros(40, 90, 90), _centers((40, 90, 90), 64, 5), SIZE)
    del out
    assert output_cache_info().cached_bytes > 0
    release_output_cache()
    info = output_cache_info()
    assert (info.cached_bytes, info.cached_blocks) == (0, 0)


def _run_fresh(code: str, cache_mb: str | None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("TORCHLITE_OUTPUT_CACHE_MB", None)
    if cache_mb is not None:
        env["TORCHLITE_OUTPUT_CACHE_MB"] = cache_mb
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True, timeout=120
    )


_FILL_AND_FREE = """
    import torch
    from torchlite.ops import crop3d, output_cache_info
    volume = torch.zeros(40, 90, 90)
    centers = torch.tensor([[20, 45, 45]]).repeat(24, 1)  # 24 x 32x48x48 float32 = 7.1 MB -> one 8 MB block
    outs = [crop3d(volume, centers, (32, 48, 48)) for _ in range(3)]
    del outs
    info = output_cache_info()
    print(info.cached_bytes, info.cached_blocks, info.limit_bytes)
"""


def test_the_limit_bounds_what_is_held_oldest_given_back_first():
    done = _run_fresh(_FILL_AND_FREE, "20")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(16 * MB), "2", str(20 * MB)]


def test_a_limit_of_zero_turns_the_cache_off():
    done = _run_fresh(_FILL_AND_FREE, "0")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "0", "0"]


def test_the_default_limit_is_512_mb():
    done = _run_fresh(_FILL_AND_FREE, None)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(24 * MB), "3", str(512 * MB)]


@pytest.mark.parametrize("bad", ["lots", "-5", "12.5"])
def test_a_bad_limit_is_named_in_the_error(bad):
    done = _run_fresh(_FILL_AND_FREE, bad)
    assert done.returncode != 0
    assert "TORCHLITE_OUTPUT_CACHE_MB" in done.stderr and repr(bad).strip('"') in done.stderr


class _Crops(torch.utils.data.Dataset):
    def __init__(self, volume):
        self.volume = volume

    def __len__(self):
        return 4

    def __getitem__(self, i):
        return crop3d(self.volume, _centers(tuple(self.volume.shape), 64, 10 + i), SIZE)


def test_forked_workers_crop_correctly_from_an_inherited_cache():
    shape = (40, 90, 90)
    volume = torch.randint(-1000, 1000, shape, dtype=torch.int16)
    held = crop3d(volume, _centers(shape, 64, 9), SIZE)
    del held  # the parent holds a cached block when it forks
    assert output_cache_info().cached_blocks >= 1
    loader = torch.utils.data.DataLoader(
        _Crops(volume), batch_size=None, num_workers=2, multiprocessing_context="fork"
    )
    for i, batch in enumerate(loader):
        assert torch.equal(batch, crop3d_reference(volume, _centers(shape, 64, 10 + i), SIZE))
