"""Memory bandwidth probes, timed beside the operators they bound.

A crop or a Dice pass moves bytes and does little arithmetic, so the honest
yardstick is the machine's own bandwidth measured in the same run.
"""

from __future__ import annotations

import torch

from torchlite.bench.registry import Case


def write_bandwidth_case(group: str, numel: int, dtype: torch.dtype = torch.float32) -> Case:
    """A case that fills a preallocated tensor of `numel` elements: the write
    bandwidth an operator producing that many outputs cannot beat."""

    def make(quick: bool, device: str):
        buf = torch.empty(numel, dtype=dtype, device=device)
        buf.fill_(0)  # fault the pages in outside the timed region

        def run():
            buf.fill_(1)
            return buf

        return run

    nbytes = numel * torch.empty((), dtype=dtype).element_size()
    return Case(
        group=group,
        name="memory write bandwidth (fill_ of the output size)",
        make=make,
        nbytes=nbytes,
        devices=("cpu", "cuda"),
    )
