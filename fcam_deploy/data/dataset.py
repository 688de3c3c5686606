"""``WSOLDataset``: a map-style torch dataset over a :class:`~fcam_deploy.data.metadata.WSOLMetadata` split.

Each item is a dict::

    {"image": float32 (3, S, S) normalised,
     "raw": float32 (3, S, S) RGB in [0, 255], same geometry as "image" (for the CRF loss),
     "label": int64 scalar tensor,
     "image_id": str}

Train items use the random crop/flip of :mod:`fcam_deploy.data.transforms`; eval items are a plain resize to
S x S. Randomness is reproducible and independent of worker processes and sampling order: item ``i`` in epoch
``e`` draws from a ``torch.Generator`` seeded by ``(seed, e, i)``. Call :meth:`WSOLDataset.set_epoch` before each
epoch (as with ``DistributedSampler.set_epoch``), and use ``persistent_workers=False`` so workers see the new
epoch. Works with ``torch.utils.data.DistributedSampler``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from fcam_deploy.data.images import DEFAULT_MAX_PIXELS, load_image_rgb
from fcam_deploy.data.metadata import WSOLMetadata
from fcam_deploy.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    _check_sizes,
    eval_transform,
    resize_to_tensor,
    train_transform,
)
from fcam_deploy.errors import ConfigError

__all__ = ["WSOLDataset", "item_generator"]


def item_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """The generator of item ``index`` in ``epoch`` (a function of the three integers only)."""
    state = np.random.SeedSequence([int(seed), int(epoch), int(index)]).generate_state(2, dtype=np.uint32)
    g = torch.Generator()
    g.manual_seed((int(state[0]) << 31) ^ int(state[1]))
    return g


class WSOLDataset(Dataset[dict[str, Any]]):
    """Images and labels of one split, transformed per docs/method.md §2.6.

    Args:
        meta: the split's metadata.
        image_root: folder the image ids are relative to (``None``: ``meta.image_root``).
        train: training transform (random crop + flip) or eval transform (resize to S x S).
        size: output side S.
        resize: side the image is resized to before the random crop (train only; >= size).
        mean, std: normalisation.
        seed: base seed of the per-item generators.
        max_pixels: decompression-bomb limit passed to :func:`load_image_rgb`.
        cache: keep each image's resized uint8 tensor in memory after its first load (per process).
    """

    def __init__(
        self,
        meta: WSOLMetadata,
        image_root: str | Path | None = None,
        train: bool = False,
        size: int = 224,
        resize: int = 256,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        *,
        seed: int = 0,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        cache: bool = False,
    ) -> None:
        _check_sizes(size, resize if train else None)
        if len(mean) != 3 or len(std) != 3 or any(s <= 0 for s in std):
            raise ConfigError(f"mean={mean!r}, std={std!r}: need 3 values each, std > 0")
        self.meta = meta
        self.image_root = Path(image_root) if image_root is not None else meta.image_root
        self.train = bool(train)
        self.size = int(size)
        self.resize = int(resize)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.seed = int(seed)
        self.max_pixels = int(max_pixels)
        self.epoch = 0
        self._cache: dict[int, torch.Tensor] | None = {} if cache else None

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random crops/flips the next items use."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.meta.image_ids)

    def _resized(self, index: int) -> torch.Tensor:
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        side = self.resize if self.train else self.size
        img = load_image_rgb(self.image_root / self.meta.image_ids[index], max_pixels=self.max_pixels)
        t = resize_to_tensor(img, side)
        if self._cache is not None:
            self._cache[index] = t
        return t

    def get(self, index: int, generator: torch.Generator | None = None) -> dict[str, Any]:
        """Item ``index``; train items draw from ``generator`` (default: the item's own seeded generator)."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        index = index % len(self)
        image_id = self.meta.image_ids[index]
        resized = self._resized(index)
        if self.train:
            g = generator if generator is not None else item_generator(self.seed, self.epoch, index)
            image, raw = train_transform(resized, self.size, self.resize, g, self.mean, self.std)
        else:
            image, raw = eval_transform(resized, self.size, self.mean, self.std)
        return {
            "image": image,
            "raw": raw,
            "label": torch.tensor(self.meta.labels[image_id], dtype=torch.int64),
            "image_id": image_id,
        }

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.get(index)
