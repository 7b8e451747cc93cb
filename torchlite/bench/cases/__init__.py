"""One module per operator family; importing registers its cases."""

from torchlite.bench.cases import memory  # noqa: F401
from torchlite.bench.cases import crop3d  # noqa: F401
from torchlite.bench.cases import dice  # noqa: F401
from torchlite.bench.cases import affine  # noqa: F401
from torchlite.bench.cases import training_samples  # noqa: F401
from torchlite.bench.cases import training_steps  # noqa: F401
from torchlite.bench.cases import analysis  # noqa: F401
from torchlite.bench.cases import app  # noqa: F401
