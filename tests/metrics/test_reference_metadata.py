"""The reference test suite's BoxEvaluator metadata expectations (docs/protocol.md §1.5), on the committed lines
of the public CUB / ILSVRC metadata, read by fcam_deploy.data and scaled into the 224 frame."""

from __future__ import annotations

from pathlib import Path

import pytest

from fcam_deploy.metrics import resize_box

BOXES = {
    ("CUB", "val"): [[(176, 136, 459, 291)], [(44, 183, 426, 254)], [(437, 42, 834, 422)]],
    ("CUB", "test"): [[(60, 27, 385, 331)], [(14, 112, 402, 298)], [(33, 53, 284, 448)]],
    ("ILSVRC", "val"): [[(156, 163, 318, 230)], [(143, 142, 394, 248)], [(28, 94, 485, 303)]],
    ("ILSVRC", "test"): [[(111, 108, 441, 193)], [(45, 49, 499, 162), (2, 69, 437, 207)], [(38, 19, 385, 373)]],
}
SIZES = {
    ("CUB", "val"): [(560, 419), (576, 432), (999, 587)],
    ("CUB", "test"): [(500, 335), (500, 347), (500, 470)],
    ("ILSVRC", "val"): [(500, 375)] * 3,
    ("ILSVRC", "test"): [(500, 375)] * 3,
}


@pytest.mark.parametrize(("dataset", "split"), sorted(BOXES))
def test_first_three_images_boxes_and_sizes(wsol_data: Path, dataset: str, split: str) -> None:
    from fcam_deploy.data import load_metadata

    meta = load_metadata(
        wsol_data / "metadata" / dataset / split, wsol_data / "images", check_files=False, num_classes=1000
    )
    ids = meta.image_ids[:3]
    assert [[tuple(b) for b in meta.boxes[i]] for i in ids] == BOXES[(dataset, split)]
    assert [tuple(meta.sizes[i]) for i in ids] == SIZES[(dataset, split)]
    for i in meta.image_ids:
        w, h = meta.sizes[i]
        for b in meta.boxes[i]:
            x0, y0, x1, y1 = b
            assert 0 <= x0 <= x1 <= w - 1 and 0 <= y0 <= y1 <= h - 1
            r = resize_box(b, (w, h))
            assert 0 <= r[0] <= r[2] <= 223 and 0 <= r[1] <= r[3] <= 223
