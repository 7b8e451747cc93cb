"""RandomAffine3d / RandomAffine2d: the book's knobs, drawn per sample."""

import math

import pytest
import torch

from torchlite.ops.random_affine import RandomAffine2d, RandomAffine3d


def _gen(seed=0):
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def test_all_off_is_identity():
    d = RandomAffine3d(flip=False, offset=0, scale=0, rotate=False, noise=0).draw(4, _gen())
    expected = torch.zeros(4, 3, 4)
    expected[:, :, :3] = torch.eye(3)
    torch.testing.assert_close(d.theta, expected)
    assert d.noise_std == 0


def test_offset_moves_the_translation_column():
    # The book writes its offset into the dropped bottom row: a no-op. Ours
    # must land in theta[:, :, 3], within +-offset, and vary per sample.
    d = RandomAffine3d(flip=False, offset=0.1, scale=0, rotate=False, noise=0).draw(512, _gen())
    t = d.theta[:, :, 3]
    assert t.abs().max() <= 0.1 + 1e-7
    assert t.abs().max() > 0.09  # spans the range
    assert t.std(dim=0).min() > 0.04  # uniform on [-0.1, 0.1] has std 0.0577
    torch.testing.assert_close(d.theta[:, :, :3], torch.eye(3).expand(512, 3, 3))


def test_flip_half_the_time_per_axis():
    d = RandomAffine3d(flip=True, offset=0, scale=0, rotate=False, noise=0).draw(4000, _gen(1))
    diag = torch.diagonal(d.theta[:, :, :3], dim1=1, dim2=2)
    assert set(diag.unique().tolist()) == {-1.0, 1.0}
    frac = (diag < 0).float().mean(dim=0)
    assert torch.all((frac - 0.5).abs() < 0.04), frac


def test_scale_within_range():
    d = RandomAffine3d(flip=False, offset=0, scale=0.2, rotate=False, noise=0).draw(2000, _gen(2))
    diag = torch.diagonal(d.theta[:, :, :3], dim1=1, dim2=2)
    assert diag.min() >= 0.8 - 1e-6 and diag.max() <= 1.2 + 1e-6
    assert diag.min() < 0.81 and diag.max() > 1.19


def test_rotation_is_about_the_index_axis():
    d = RandomAffine3d(flip=False, offset=0, scale=0, rotate=True, noise=0).draw(256, _gen(3))
    a = d.theta[:, :, :3].double()
    # Orthonormal, determinant +1, and z (the index axis, row/col 2) untouched.
    torch.testing.assert_close(a @ a.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(256, 3, 3), atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.linalg.det(a), torch.ones(256, dtype=torch.float64), atol=1e-6, rtol=0)
    torch.testing.assert_close(a[:, 2, :], torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand(256, 3))
    angles = torch.atan2(a[:, 1, 0], a[:, 0, 0])
    # Angles cover the circle: every quadrant is hit.
    quadrants = ((angles + math.pi) // (math.pi / 2)).long().unique()
    assert len(quadrants) >= 4


def test_same_generator_seed_same_draw_and_seed_differs():
    aug = RandomAffine3d()
    a, b = aug.draw(8, _gen(7)), aug.draw(8, _gen(7))
    torch.testing.assert_close(a.theta, b.theta)
    assert a.seed == b.seed and a.noise_std == 25.0
    c = aug.draw(8, _gen(8))
    assert not torch.equal(a.theta, c.theta)


def test_2d_defaults_are_the_books():
    aug = RandomAffine2d()
    assert (aug.flip, aug.offset, aug.scale, aug.rotate, aug.noise) == (True, 0.03, 0.2, True, 25.0)
    d = aug.draw(16, _gen())
    assert d.theta.shape == (16, 2, 3)
    assert d.theta[:, :, 2].abs().max() <= 0.03 + 1e-7
    # Per-sample draws (the book draws one matrix per batch).
    assert not torch.allclose(d.theta[0], d.theta[1])


def test_3d_defaults_are_the_books():
    aug = RandomAffine3d()
    assert (aug.flip, aug.offset, aug.scale, aug.rotate, aug.noise) == (True, 0.1, 0.2, True, 25.0)


def test_negative_knob_rejected():
    with pytest.raises(ValueError, match="offset"):
        RandomAffine3d(offset=-0.1)
    with pytest.raises(ValueError, match="noise"):
        RandomAffine2d(noise=-1)


@pytest.mark.parametrize("n", [1, 5, 32])
def test_draw_is_the_books_transform_of_per_knob_uniforms(n):
    # The draw takes every uniform in one generator call; it must be the
    # numbers one call per knob (flip, scale, angle, offset) would give, put
    # together as the book does: diag(flip * scale) @ rotation, + offset.
    g = _gen(11)
    def u(k):
        return torch.rand(n, k, generator=g, dtype=torch.float64)

    flip_u, scale_u = u(3), u(3)
    angle = u(1)[:, 0] * 2 * math.pi
    offset_u = u(3)
    diag = torch.where(flip_u > 0.5, -1.0, 1.0) * (1 + 0.2 * (scale_u * 2 - 1))
    rot = torch.eye(3, dtype=torch.float64).repeat(n, 1, 1)
    rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1] = angle.cos(), -angle.sin(), angle.sin(), angle.cos()
    expected = torch.cat([torch.diag_embed(diag) @ rot, (0.1 * (offset_u * 2 - 1))[:, :, None]], dim=2)

    d = RandomAffine3d().draw(n, _gen(11))
    torch.testing.assert_close(d.theta, expected.float(), rtol=0, atol=1e-7)
