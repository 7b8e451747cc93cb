"""xyz_to_irc / irc_to_xyz against SimpleITK's own transforms."""

import numpy as np
import pytest
import SimpleITK as sitk
from _ct_files import DIRECTIONS, rotation, volume, write_scan

from torchlite.data.geometry import Geometry, irc_to_xyz, xyz_to_irc, xyz_to_irc_float
from torchlite.data.metaimage import read_header

CASES = dict(DIRECTIONS, oblique=rotation((1.0, 2.0, -0.5), 33.0))


@pytest.fixture(params=sorted(CASES))
def scan(request, tmp_path):
    """(our Geometry read from the file, SimpleITK's image of the same file)."""
    rng = np.random.default_rng(sorted(CASES).index(request.param))
    path = write_scan(
        tmp_path / "g.mhd",
        volume((9, 11, 13)),
        spacing=(0.63, 0.81, 2.5),
        origin=tuple(rng.uniform(-300, 300, 3)),
        direction=CASES[request.param],
    )
    image = sitk.ReadImage(str(path))
    return read_header(path).geometry, image, rng


def test_header_direction_is_sitk_direction(scan):
    geometry, image, _ = scan
    np.testing.assert_allclose(geometry.direction, np.reshape(image.GetDirection(), (3, 3)), atol=1e-12)
    np.testing.assert_allclose(geometry.origin, image.GetOrigin(), atol=1e-9)
    np.testing.assert_allclose(geometry.spacing, image.GetSpacing(), atol=1e-12)
    assert geometry.shape == image.GetSize()[::-1]


def _random_xyz(geometry, rng, n):
    """Points spread over and around the scan, in patient space."""
    irc = rng.uniform(-3, np.asarray(geometry.shape) + 3, size=(n, 3))
    return geometry.irc_to_xyz(irc) + rng.normal(0, 0.3, size=(n, 3))


def test_xyz_to_irc_matches_sitk(scan):
    geometry, image, rng = scan
    xyz = _random_xyz(geometry, rng, 200)
    ours = geometry.xyz_to_irc(xyz)
    theirs = np.array([image.TransformPhysicalPointToIndex(tuple(p))[::-1] for p in xyz])
    np.testing.assert_array_equal(ours, theirs)
    assert ours.dtype == np.int64
    continuous = np.array([image.TransformPhysicalPointToContinuousIndex(tuple(p))[::-1] for p in xyz])
    np.testing.assert_allclose(geometry.xyz_to_irc_float(xyz), continuous, atol=1e-9)


def test_irc_to_xyz_matches_sitk(scan):
    geometry, image, rng = scan
    irc = rng.uniform(-2, 15, size=(100, 3))
    theirs = np.array([image.TransformContinuousIndexToPhysicalPoint(tuple(p[::-1])) for p in irc])
    np.testing.assert_allclose(geometry.irc_to_xyz(irc), theirs, atol=1e-9)
    ints = rng.integers(0, 9, size=(20, 3))
    theirs = np.array([image.TransformIndexToPhysicalPoint([int(v) for v in p[::-1]]) for p in ints])
    np.testing.assert_allclose(geometry.irc_to_xyz(ints), theirs, atol=1e-9)


def test_round_trips(scan):
    geometry, _, rng = scan
    xyz = _random_xyz(geometry, rng, 100)
    np.testing.assert_allclose(geometry.irc_to_xyz(geometry.xyz_to_irc_float(xyz)), xyz, atol=1e-9)
    irc = rng.integers(-5, 20, size=(100, 3))
    np.testing.assert_array_equal(geometry.xyz_to_irc(geometry.irc_to_xyz(irc)), irc)


def _book_xyz2irc(xyz, origin, spacing, direction):
    # Deep Learning with PyTorch, p2ch10 util.xyz2irc, verbatim in substance.
    cri = ((np.asarray(xyz) - origin) @ np.linalg.inv(direction)) / spacing
    return np.round(cri)[::-1].astype(int)


def test_book_conversion_is_wrong_for_a_permuted_direction_and_ours_is_right(tmp_path):
    direction = DIRECTIONS["cycle"]
    path = write_scan(tmp_path / "p.mhd", volume((9, 11, 13)), spacing=(0.6, 0.9, 2.0), direction=direction)
    image = sitk.ReadImage(str(path))
    g = read_header(path).geometry
    xyz = g.irc_to_xyz([4, 6, 3])
    truth = image.TransformPhysicalPointToIndex(tuple(xyz))[::-1]
    assert tuple(g.xyz_to_irc(xyz)) == truth == (4, 6, 3)
    assert tuple(_book_xyz2irc(xyz, g.origin, g.spacing, g.direction)) != truth


def test_exact_ties_round_half_up_like_itk():
    image = sitk.Image(10, 10, 10, sitk.sitkInt16)
    image.SetSpacing((0.5, 0.5, 0.5))
    g = Geometry(np.zeros(3), np.full(3, 0.5), np.eye(3), (10, 10, 10))
    for x in (0.25, 0.75, 1.25, -0.25, -0.75):  # continuous index exactly k + 0.5
        expected = image.TransformPhysicalPointToIndex((x, 0.0, 0.0))[0]
        assert g.xyz_to_irc([x, 0.0, 0.0])[2] == expected
    assert g.xyz_to_irc([0.25, 0, 0])[2] == 1  # np.round (the book) gives 0


def test_single_point_batch_and_empty_shapes():
    args = ((1.0, 2.0, 3.0), (0.5, 0.5, 2.0), np.eye(3))
    assert xyz_to_irc((1.0, 2.0, 3.0), *args).shape == (3,)
    assert irc_to_xyz((0, 0, 0), *args).tolist() == [1.0, 2.0, 3.0]
    assert xyz_to_irc(np.zeros((4, 3)), *args).shape == (4, 3)
    assert xyz_to_irc(np.zeros((0, 3)), *args).shape == (0, 3)
    assert xyz_to_irc_float(np.zeros((0, 3)), *args).dtype == np.float64
    # a flat 9-tuple (SimpleITK's GetDirection) is accepted as the matrix
    np.testing.assert_array_equal(irc_to_xyz((1, 2, 3), args[0], args[1], tuple(np.eye(3).ravel())),
                                  irc_to_xyz((1, 2, 3), *args))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: xyz_to_irc(np.zeros((4, 2)), (0, 0, 0), (1, 1, 1), np.eye(3)), "`xyz`"),
        (lambda: irc_to_xyz(np.zeros((2, 3, 3)), (0, 0, 0), (1, 1, 1), np.eye(3)), "`irc`"),
        (lambda: xyz_to_irc((0, 0, 0), (0, 0), (1, 1, 1), np.eye(3)), "`origin`"),
        (lambda: xyz_to_irc((0, 0, 0), (0, 0, 0), (1, 0, 1), np.eye(3)), "`spacing`"),
        (lambda: xyz_to_irc((0, 0, 0), (0, 0, 0), (1, 1, 1), np.eye(2)), "`direction`"),
        (lambda: xyz_to_irc((0, 0, 0), (0, 0, 0), (1, 1, 1), np.zeros((3, 3))), "`direction`.*invertible"),
        (lambda: irc_to_xyz((0, 0, 0), (0, np.nan, 0), (1, 1, 1), np.eye(3)), "`origin`.*finite"),
        (lambda: Geometry((0, 0, 0), (1, 1, 1), np.eye(3), (2, 2)), "`shape`"),
    ],
)
def test_bad_arguments_name_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_contains_irc():
    g = Geometry((0, 0, 0), (1, 1, 1), np.eye(3), (2, 3, 4))
    pts = np.array([[0, 0, 0], [1, 2, 3], [2, 0, 0], [0, 3, 0], [0, 0, 4], [-1, 0, 0]])
    assert g.contains_irc(pts).tolist() == [True, True, False, False, False, False]
