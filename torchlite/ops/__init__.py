"""The Python face of torchlite's operators (torch.ops.torchlite.*)."""

from torchlite.ops import _library

_library.load()
