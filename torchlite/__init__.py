"""torchlite: lung nodule detection in chest CT with PyTorch.

The operators (``torchlite.ops``) are loaded on import of that subpackage;
importing ``torchlite`` alone stays cheap so the CLI can start quickly.
"""

from torchlite._version import __version__

__all__ = ["__version__"]
