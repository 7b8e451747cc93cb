"""What the exported models expect and return, and ``manifest.json``.

:func:`model_interface` is the one description of each model's input and
outputs: the exporters take their example inputs and dynamic dimensions from
it, and the manifest writes it out. :func:`build_manifest` adds every
constant of the analysis pipeline (``torchlite/analysis``), imported from
where that pipeline takes it, so the C++ program reads them instead of
repeating them and a change on the Python side reaches it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
TASKS = ("seg", "cls", "mal")
EXAMPLE_BATCH = 2  # not 1: torch.export would specialize a size-1 batch
SEG_EXAMPLE_SIDE = 64  # small, so tracing is fast; any multiple of the U-Net's stride works
MAX_BATCH = 4096
MAX_SIDE = 4096  # pixels; a CT slice is 512 on a side, rarely 1024


@dataclass(frozen=True)
class ModelInterface:
    """A model's input (one float32 tensor) and outputs, as the exporters and the manifest see them."""

    task: str
    input_name: str  # the forward() argument
    example_shape: tuple[int, ...]  # static dims as the model needs them; dynamic ones an example value
    dynamic: dict[int, str]  # input dim -> name of a dynamic dimension
    multiple_of: dict[int, int]  # dynamic dims that must be a multiple of this
    maximum: dict[int, int]  # largest size of each dynamic dim (what AOTInductor compiles for)
    outputs: tuple[dict, ...]  # per returned tensor: name, shape (-1 = dynamic), meaning
    use: dict  # which output holds the number the pipeline uses

    def example_input(self, seed: int = 0, shape: tuple[int, ...] | None = None) -> torch.Tensor:
        """Random HU in the clipped window (realistic values: BatchNorm sees what it was trained on),
        of ``shape`` (default: the example shape)."""
        from torchlite.data.datasets.patch_dataset import HU_CLIP

        lo, hi = HU_CLIP
        g = torch.Generator().manual_seed(seed)
        return torch.rand(shape or self.example_shape, generator=g) * (hi - lo) + lo

    def other_shape(self) -> tuple[int, ...]:
        """The example shape with every dynamic dimension changed (by its multiple): a second input
        to check that an export is not specialized to the first."""
        return tuple(s + self.multiple_of.get(d, 1) if d in self.dynamic else s
                     for d, s in enumerate(self.example_shape))

    def to_json(self) -> dict:
        return {"name": self.input_name, "dtype": "float32",
                "shape": [-1 if d in self.dynamic else s for d, s in enumerate(self.example_shape)],
                "dynamic": {str(d): name for d, name in self.dynamic.items()},
                "multiple_of": {str(d): m for d, m in self.multiple_of.items()},
                "maximum": {str(d): m for d, m in self.maximum.items()},
                "size_rule": self.size_rule}

    @property
    def size_rule(self) -> str:
        if not self.multiple_of:
            return "any size of the dynamic dimensions up to 'maximum'"
        dims = ", ".join(self.dynamic[d] for d in self.multiple_of)
        return (f"{dims}: multiples of 'multiple_of' up to 'maximum'; the model gives a smaller output "
                f"(floored to the multiple) for other sizes, so pad the input first")


def unet_stride(model: nn.Module) -> int:
    """H and W must be multiples of this: the U-Net max-pools (depth - 1) times by 2, and
    on other sizes its output is smaller than its input (floored to the multiple)."""
    return 2 ** (len(model.unet.down_path) - 1)


def model_interface(task: str, model: nn.Module) -> ModelInterface:
    from torchlite.analysis.segment import CONTEXT
    from torchlite.data.datasets.patch_dataset import PATCH_SIZE

    if task == "seg":
        channels = model.input_batchnorm.num_features
        if channels != 2 * CONTEXT + 1:
            raise ValueError(f"seg model takes {channels} channels, the pipeline gives {2 * CONTEXT + 1} "
                             f"(CONTEXT={CONTEXT} slices each side)")
        stride = unet_stride(model)
        return ModelInterface(
            task, "x", (EXAMPLE_BATCH, channels, SEG_EXAMPLE_SIDE, SEG_EXAMPLE_SIDE),
            dynamic={0: "batch", 2: "height", 3: "width"}, multiple_of={2: stride, 3: stride},
            maximum={0: MAX_BATCH, 2: MAX_SIDE, 3: MAX_SIDE},
            outputs=({"name": "probability", "shape": [-1, 1, -1, -1],
                      "meaning": "sigmoid nodule probability of each pixel of the middle slice; "
                                 "same height and width as the input"},),
            use={"output": 0, "channel": 0})
    if task in ("cls", "mal"):
        classes = model.head_linear.out_features
        what = "nodule" if task == "cls" else "malignant"
        return ModelInterface(
            task, "x", (EXAMPLE_BATCH, 1, *PATCH_SIZE), dynamic={0: "batch"}, multiple_of={},
            maximum={0: MAX_BATCH},
            outputs=({"name": "logits", "shape": [-1, classes], "meaning": "class scores before softmax"},
                     {"name": "probabilities", "shape": [-1, classes],
                      "meaning": f"softmax over classes; index 1 = {what}"}),
            use={"output": 1, "index": 1})
    raise ValueError(f"unknown model task {task!r}: expected one of {', '.join(TASKS)}")


def _structure(array) -> list:
    """A scipy structuring element as nested 0/1 lists, indexed [I][R][C]."""
    return array.astype(int).tolist()


def pipeline_constants(device: str = "cpu") -> dict:
    """Everything ``torchlite.analysis.pipeline.analyze_scan`` does between the models on ``device``, as data."""
    from torchlite.analysis.grouping import FACE_CONNECTIVITY, IN_PLANE, WEIGHT_OFFSET_HU
    from torchlite.analysis.pipeline import AnalysisConfig
    from torchlite.analysis.segment import CONTEXT
    from torchlite.data.datasets.patch_dataset import AIR_HU, HU_CLIP, PATCH_SIZE

    config = AnalysisConfig()
    return {
        "hu_clip": list(HU_CLIP),
        "segmentation": {
            "context_slices": CONTEXT,
            "channels": 2 * CONTEXT + 1,
            "channel_order": "slice i - context ... slice i + context; indices clamped to [0, depth - 1]",
            "input": "HU as float32, clipped to hu_clip",
            "batch_size": config.seg_batch_size_on(device),
        },
        "grouping": {
            "threshold": config.threshold,
            "threshold_rule": "voxel is nodule when probability > threshold",
            "erosion_iterations": config.erosion,
            "erosion_structure": _structure(IN_PLANE),  # in-plane, 4 neighbours
            "erosion_border_value": 0,
            "erosion_note": "binary erosion in the slice plane (4-neighbour cross); voxels beyond the scan count as 0",
            "labelling_structure": _structure(FACE_CONNECTIVITY),  # 3D, 6 face neighbours
            "labelling_note": "connected components with 6-connectivity (face neighbours), "
                              "numbered in scan order of each group's first voxel",
            "center_of_mass_weight": {"clip": list(HU_CLIP), "offset": WEIGHT_OFFSET_HU,
                                      "rule": "weight = clip(HU, hu_clip) + offset"},
            "diameter_mm": "2 * (3 * voxels * prod(spacing) / (4 * pi))^(1/3) + 2 * mean(row and column spacing)",
        },
        "crop": {
            "size_irc": list(PATCH_SIZE),
            "fill_hu": AIR_HU,
            "clip": list(HU_CLIP),
            "center": "round half up of the weighted center of mass: floor(c + 0.5) per axis",
            "start": "center - size // 2 per axis; voxels outside the scan take fill_hu",
            "batch_size": config.cls_batch_size_on(device),
        },
        "detections": "sorted by decreasing nodule probability; xyz = geometry.irc_to_xyz(center of mass)",
    }


def build_manifest(*, interfaces: dict[str, ModelInterface], files: dict[str, dict[str, str]], device: str,
                   formats: list[str], sources: dict[str, dict] | None = None) -> dict:
    from torchlite import __version__

    models = {}
    for task, iface in interfaces.items():
        models[task] = {"files": files.get(task, {}), "input": iface.to_json(), "outputs": list(iface.outputs),
                        "use": iface.use, "source": (sources or {}).get(task, {})}
    return {
        "format_version": FORMAT_VERSION,
        "torchlite_version": __version__,
        "torch_version": torch.__version__,
        "device": device,
        "formats": formats,
        "dtype": "float32",
        "memory_format": {
            # Measured: a package fed channels_last input returns garbage, without an error.
            "aoti": "contiguous only (NCHW, NCDHW): a package is compiled for its example input's strides "
                    "and does not check them; make inputs contiguous first",
            "torchscript": "any layout; on CPU channels_last (seg) and channels_last_3d (cls, mal) are faster "
                           "(oneDNN; a CPU export is traced so, its frozen weights stored in that layout), "
                           "on CUDA contiguous",
        },
        "models": models,
        "pipeline": pipeline_constants(device),
    }


def write_manifest(path: str | os.PathLike, manifest: dict) -> Path:
    from torchlite.utils.atomic import atomic_write

    path = Path(path)
    with atomic_write(path, "w") as f:
        json.dump(manifest, f, indent=1, default=str)  # checkpoint metrics may hold numpy scalars
        f.write("\n")
    return path
