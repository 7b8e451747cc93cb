import pytest
import torch

import torchlite.ops  # noqa: F401  (loads the operators)


def pytest_collection_modifyitems(config, items):
    # The cases are sized like real workloads; keep intra-op threads at torch's
    # default and run cases in registration order (reference first).
    torch.manual_seed(0)
