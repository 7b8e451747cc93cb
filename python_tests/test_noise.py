"""The counter-based Gaussian noise shared by affine3d / affine2d / sample_patches3d.

The kernels' generator (csrc/kernels/noise.h: Philox4x32-10 + Box-Muller
with polynomial log/sin/cos) is checked against its torch re-implementation
in torchlite.ops.reference (exact float64 math), which is itself checked
against the published Philox known-answer vectors; then the noise's
statistics are checked directly.
"""

import math

import pytest
import torch

from torchlite.ops import reference
from torchlite.ops.affine import affine2d, affine3d
from torchlite.ops.sample_patches import sample_patches3d


def _noise3d(shape, seed, std=1.0):
    """affine3d of zeros with identity theta: the output is the noise alone."""
    x = torch.zeros(shape)
    theta = torch.eye(3, 4).expand(shape[0], 3, 4)
    return affine3d(x, theta, noise_std=std, seed=seed)


# Random123's kat_vectors for philox4x32_10: (counter, key) -> output.
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


@pytest.mark.parametrize("counter,key,expected", KAT)
def test_reference_philox_matches_known_answers(counter, key, expected):
    out = reference.philox4x32_10_reference([torch.tensor([c]) for c in counter], key)
    assert [int(w) for w in out] == list(expected)


@pytest.mark.parametrize("seed", [0, 1, 12345, -7, 2**62 + 12345, -(2**63)])
def test_kernel_noise_equals_the_reference_generator(seed):
    out = _noise3d((2, 3, 17, 19, 23), seed)  # odd sizes: groups of 4 straddle rows
    want = reference.philox_normal_reference(out.numel(), seed).reshape(out.shape)
    # Polynomial log/sin/cos and float32 vs exact float64 math.
    torch.testing.assert_close(out.double(), want, rtol=0, atol=1e-5)


def test_noise_is_indexed_by_flat_output_element_in_every_operator():
    seed = 99
    n2 = affine2d(torch.zeros(3, 2, 13, 11), torch.eye(2, 3).expand(3, 2, 3), noise_std=1.0, seed=seed)
    torch.testing.assert_close(n2.reshape(-1).double(), reference.philox_normal_reference(n2.numel(), seed), rtol=0, atol=1e-5)
    vol = torch.zeros(10, 10, 10)
    n3 = sample_patches3d(vol, torch.tensor([[5, 5, 5], [0, 9, 3]]), torch.eye(3, 4).expand(2, 3, 4), (3, 5, 7),
                          fill=0.0, noise_std=1.0, seed=seed)
    torch.testing.assert_close(n3.reshape(-1).double(), reference.philox_normal_reference(n3.numel(), seed), rtol=0, atol=1e-5)


def test_noise_is_added_to_the_sample_and_scaled_by_std():
    x = torch.randn(2, 1, 6, 7, 8)
    theta = torch.eye(3, 4).expand(2, 3, 4) + 0.1
    clean = affine3d(x, theta)
    noisy = affine3d(x, theta, noise_std=25.0, seed=3)
    unit = reference.philox_normal_reference(x.numel(), 3).reshape(x.shape).float()
    torch.testing.assert_close(noisy - clean, 25.0 * unit, rtol=0, atol=1e-4)


def test_statistics_of_one_million_samples():
    z = _noise3d((4, 1, 64, 64, 64), seed=2024).reshape(-1).double()  # 2^20 samples
    n = z.numel()
    assert abs(z.mean()) < 5 / math.sqrt(n)  # 5 standard errors
    assert abs(z.std() - 1) < 5 * math.sqrt(0.5 / n)
    # Shape: the fractions within 1, 2, 3 sigma, and the tails, are the normal's.
    for k, p in ((1, 0.682689), (2, 0.954500), (3, 0.997300)):
        frac = (z.abs() < k).double().mean()
        assert abs(frac - p) < 5 * math.sqrt(p * (1 - p) / n), (k, frac)
    assert z.abs().max() < 5.8  # Box-Muller with 23-bit u cuts the tail at 5.77
    assert abs((z**3).mean()) < 5 * math.sqrt(15 / n)  # skewness
    assert abs((z**4).mean() - 3) < 5 * math.sqrt(96 / n)  # kurtosis
    # Neighbours are uncorrelated: within a Philox group (lags 1-3), across
    # groups (4), along a row (64) and a slice (4096).
    for lag in (1, 2, 3, 4, 5, 64, 4096):
        corr = (z[:-lag] * z[lag:]).mean()
        assert abs(corr) < 5 / math.sqrt(n - lag), (lag, corr)


def test_same_seed_same_noise_other_seed_other_noise():
    a = _noise3d((2, 1, 8, 16, 16), seed=5)
    assert torch.equal(a, _noise3d((2, 1, 8, 16, 16), seed=5))
    for other in (6, 5 + 2**32, -5):  # the high key word matters too
        b = _noise3d((2, 1, 8, 16, 16), seed=other)
        corr = (a * b).mean() / (a.std() * b.std())
        assert abs(corr) < 0.05, other


def test_noise_does_not_depend_on_thread_count():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _noise3d((3, 2, 9, 31, 33), seed=8)
        torch.set_num_threads(max(2, before))
        many = _noise3d((3, 2, 9, 31, 33), seed=8)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, many)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: CPU/CUDA agreement untestable here")
def test_cuda_noise_equals_cpu_noise():
    cpu = _noise3d((2, 1, 17, 19, 23), seed=31)
    x = torch.zeros(2, 1, 17, 19, 23, device="cuda")
    gpu = affine3d(x, torch.eye(3, 4, device="cuda").expand(2, 3, 4), noise_std=1.0, seed=31)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-5)
