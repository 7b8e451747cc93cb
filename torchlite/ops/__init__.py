"""The Python face of torchlite's operators (torch.ops.torchlite.*).

Importing this package loads the compiled library and registers the fake
(shape) kernels and autograd formulas, so the operators work under
torch.compile and autograd. Plain-PyTorch equivalents live in
``torchlite.ops.reference``.
"""

from torchlite.ops import _library

_library.load()

from torchlite.ops.affine import affine2d, affine3d  # noqa: E402
from torchlite.ops.crop import crop3d  # noqa: E402
from torchlite.ops.dice import DiceLoss, dice_loss  # noqa: E402
from torchlite.ops.output_cache import OutputCacheInfo, output_cache_info, release_output_cache  # noqa: E402
from torchlite.ops.random_affine import AffineDraw, RandomAffine2d, RandomAffine3d  # noqa: E402
from torchlite.ops.sample_patches import sample_patches3d  # noqa: E402
from torchlite.ops.theta import normalized_theta_to_voxel, voxel_theta_to_normalized  # noqa: E402

__all__ = [
    "crop3d",
    "affine3d",
    "affine2d",
    "sample_patches3d",
    "dice_loss",
    "DiceLoss",
    "RandomAffine3d",
    "RandomAffine2d",
    "AffineDraw",
    "normalized_theta_to_voxel",
    "voxel_theta_to_normalized",
    "OutputCacheInfo",
    "output_cache_info",
    "release_output_cache",
]
