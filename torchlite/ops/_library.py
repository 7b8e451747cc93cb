"""Loads the compiled operator library so ``torch.ops.torchlite.*`` exist.

Normally that is the extension module ``torchlite._C`` built by setup.py.
``TORCHLITE_LIBRARY=/path/to/lib.so`` loads another build instead (a
development build of a subset of kernels, or a CUDA build made elsewhere);
both cannot be loaded at once, because a namespace's schemas may be
registered only once per process.
"""

from __future__ import annotations

import os

import torch

_loaded_from: str | None = None


def load() -> str:
    """Load the operator library once; return where it came from."""
    global _loaded_from
    if _loaded_from is not None:
        return _loaded_from
    override = os.environ.get("TORCHLITE_LIBRARY")
    if override:
        if not os.path.isfile(override):
            raise ImportError(
                f"TORCHLITE_LIBRARY={override!r} does not name a file; unset it "
                "to use the installed torchlite._C"
            )
        torch.ops.load_library(override)
        _loaded_from = override
    else:
        try:
            from torchlite import _C  # noqa: F401  (import registers the ops)
        except ImportError as exc:
            raise ImportError(
                "torchlite's compiled operators (torchlite._C) are missing or were "
                "built against another torch. Rebuild them with "
                "`pip install --no-build-isolation -e .` (or `make install`). "
                f"Cause: {exc}"
            ) from exc
        _loaded_from = _C.__file__
    return _loaded_from
