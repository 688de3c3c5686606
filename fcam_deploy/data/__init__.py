"""WSOL data: metadata reader, safe image loading, transforms, dataset, built-in synthetic set.

Public names (imported lazily on first access, so ``import fcam_deploy.data`` does no work):

* :func:`load_metadata`, :func:`open_dataset`, :class:`WSOLMetadata`, :func:`load_part_masks`
  (:mod:`.metadata`);
* :func:`load_image_rgb`, :func:`decode_image_rgb`, :func:`load_mask`, :func:`image_size`, :data:`DEFAULT_MAX_PIXELS` (:mod:`.images`);
* :func:`train_transform`, :func:`eval_transform`, :data:`IMAGENET_MEAN`, :data:`IMAGENET_STD`
  (:mod:`.transforms`);
* :class:`WSOLDataset` (:mod:`.dataset`);
* :class:`SynthConfig`, :func:`generate_synthetic`, :func:`render_sample`, :data:`PATTERNS` (:mod:`.synth`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fcam_deploy._lazy import lazy_exports

if TYPE_CHECKING:
    from fcam_deploy.data.dataset import WSOLDataset, item_generator
    from fcam_deploy.data.images import DEFAULT_MAX_PIXELS, decode_image_rgb, image_size, load_image_rgb, load_mask
    from fcam_deploy.data.metadata import Box, WSOLMetadata, load_metadata, load_part_masks, open_dataset
    from fcam_deploy.data.synth import (
        PATTERNS,
        SynthConfig,
        SynthSample,
        SynthSummary,
        generate_synthetic,
        render_sample,
    )
    from fcam_deploy.data.transforms import (
        IMAGENET_MEAN,
        IMAGENET_STD,
        CropFlip,
        eval_transform,
        sample_crop_flip,
        train_transform,
    )

_EXPORTS: dict[str, str] = {
    "Box": "metadata",
    "WSOLMetadata": "metadata",
    "load_metadata": "metadata",
    "load_part_masks": "metadata",
    "open_dataset": "metadata",
    "DEFAULT_MAX_PIXELS": "images",
    "decode_image_rgb": "images",
    "image_size": "images",
    "load_image_rgb": "images",
    "load_mask": "images",
    "IMAGENET_MEAN": "transforms",
    "IMAGENET_STD": "transforms",
    "CropFlip": "transforms",
    "eval_transform": "transforms",
    "sample_crop_flip": "transforms",
    "train_transform": "transforms",
    "WSOLDataset": "dataset",
    "item_generator": "dataset",
    "PATTERNS": "synth",
    "SynthConfig": "synth",
    "SynthSample": "synth",
    "SynthSummary": "synth",
    "generate_synthetic": "synth",
    "render_sample": "synth",
}

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PATTERNS",
    "Box",
    "CropFlip",
    "SynthConfig",
    "SynthSample",
    "SynthSummary",
    "WSOLDataset",
    "WSOLMetadata",
    "decode_image_rgb",
    "eval_transform",
    "generate_synthetic",
    "image_size",
    "item_generator",
    "load_image_rgb",
    "load_mask",
    "load_metadata",
    "load_part_masks",
    "open_dataset",
    "render_sample",
    "sample_crop_flip",
    "train_transform",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
