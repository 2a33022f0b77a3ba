"""DenseFusion networks and their checkpoints (no ROS imports).

* :func:`build_estimator` / :class:`DenseFusionEstimator`: per-pixel fusion pose estimator
  (published ``PoseNet``), color backbone ``"psp_resnet18"`` (published) or ``"compact"``;
  ``forward_best`` gives only the most confident hypothesis (:class:`BestHypothesis`).
* :func:`build_refiner` / :class:`DenseFusionRefiner`: iterative refiner (``PoseRefineNet``).
* :func:`build_segmenter`: ``"compact"`` CPU segmenter or the published ``"segnet"``.
* :func:`load_estimator`, :func:`load_refiner`, :func:`load_segmenter`, :func:`save_checkpoint`,
  :func:`read_metadata`, :class:`CheckpointError`: the one place where files are read and written;
  :class:`CheckpointMeta` is their metadata, typed, and :func:`metadata_of` reads it from a model;
  :func:`unwrap_model` strips DataParallel / DDP / ``torch.compile`` wrappers.
* :func:`fuse_batchnorm`: an inference copy with BatchNorm folded into the convolutions.
* :func:`normalize_image`: image normalisation matching a checkpoint's ``metadata_of(model).normalization``.

Conventions: quaternions are w-first ``[w, x, y, z]``; points in metres, camera frame; RGB input.
"""

from .backbones import COLOR_BACKBONES, CompactColorNet, build_color_backbone
from .blocks import fuse_batchnorm
from .checkpoint import (
    CheckpointError,
    load_estimator,
    load_refiner,
    load_segmenter,
    read_metadata,
    remap_state_dict,
    save_checkpoint,
    to_published_state_dict,
    unwrap_model,
)
from .estimator import BestHypothesis, DenseFusionEstimator, EstimatorOutput, build_estimator
from .metadata import CheckpointMeta, metadata_of
from .psp import PSPNet
from .refiner import DenseFusionRefiner, RefinerOutput, build_refiner
from .segmentation import CompactSegNet, SegNet, build_segmenter
from .transforms import IMAGENET_NORMALIZATION, PUBLISHED_NORMALIZATION, check_normalization, normalize_image

__all__ = [
    "BestHypothesis",
    "COLOR_BACKBONES",
    "CheckpointError",
    "CheckpointMeta",
    "CompactColorNet",
    "CompactSegNet",
    "DenseFusionEstimator",
    "DenseFusionRefiner",
    "EstimatorOutput",
    "IMAGENET_NORMALIZATION",
    "PSPNet",
    "PUBLISHED_NORMALIZATION",
    "RefinerOutput",
    "SegNet",
    "build_color_backbone",
    "build_estimator",
    "build_refiner",
    "build_segmenter",
    "check_normalization",
    "fuse_batchnorm",
    "load_estimator",
    "load_refiner",
    "load_segmenter",
    "metadata_of",
    "normalize_image",
    "read_metadata",
    "remap_state_dict",
    "save_checkpoint",
    "to_published_state_dict",
    "unwrap_model",
]
