"""Runtime component boxes against a scipy.ndimage oracle, including masks with no background pixel."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from fcam_deploy.runtime.localizer import boxes_from_mask


def _oracle(mask: np.ndarray, k: int) -> list[tuple[int, int, int, int]]:
    lab, n = ndimage.label(mask, structure=np.ones((3, 3), int))
    comps = []
    for c in range(1, n + 1):
        ys, xs = np.nonzero(lab == c)
        first = int(np.flatnonzero(lab.ravel() == c)[0])
        comps.append((-len(ys), first, (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))))
    return [b for _, _, b in sorted(comps)[:k]]


@pytest.mark.parametrize("seed", range(20))
def test_random_masks_match_oracle(seed: int) -> None:
    rng = np.random.default_rng(seed)
    mask = (rng.random((int(rng.integers(1, 30)), int(rng.integers(1, 30)))) < rng.uniform(0.1, 1.0)).astype(np.uint8)
    assert [tuple(b) for b in boxes_from_mask(mask, 5)] == _oracle(mask, 5)


def test_all_foreground_mask_is_one_full_box() -> None:
    mask = np.ones((7, 9), np.uint8)
    assert [tuple(b) for b in boxes_from_mask(mask, 3)] == [(0, 0, 8, 6)]


def test_empty_mask_has_no_box() -> None:
    assert boxes_from_mask(np.zeros((5, 5), np.uint8), 3) == []
