"""10 000 predict calls on a tiny model: no growth of Python allocations nor of the process RSS."""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from fcam_deploy.runtime import Localizer
from tests._support.models import blob_image


def _rss_bytes() -> int:
    statm = Path("/proc/self/statm")
    if not statm.exists():
        pytest.skip("needs /proc/self/statm (Linux) to read the RSS")
    import os

    return int(statm.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.slow
def test_ten_thousand_calls_do_not_grow_memory(onnx_model) -> None:
    loc = Localizer.load(onnx_model("cam", "onnx", size=(16, 16)), threads=1)
    images = [blob_image(16 + i % 3, 16, i) for i in range(4)]  # some need resizing, one does not
    for k in range(1000):  # warm-up: allocator pools, ORT arenas, lazy imports
        loc.predict(images[k % 4])
    gc.collect()
    rss0 = _rss_bytes()
    tracemalloc.start()
    try:
        for k in range(1000):
            loc.predict(images[k % 4])
        gc.collect()
        traced0, _ = tracemalloc.get_traced_memory()
        for k in range(1000):
            loc.predict(images[k % 4])
        gc.collect()
        traced1, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    for k in range(7000):
        loc.predict(images[k % 4])
    gc.collect()
    rss1 = _rss_bytes()
    # a leaked map/mask/logits per call would be >= 16*16*5 bytes * 1000 = 1.3 MB of traced memory
    assert traced1 - traced0 < 128 * 1024, f"Python allocations grew by {traced1 - traced0} B over 1000 calls"
    assert rss1 - rss0 < 16 * 2**20, f"RSS grew by {(rss1 - rss0) / 2**20:.1f} MiB over 9000 calls"
    last = loc.predict(images[0])
    assert isinstance(last.map, np.ndarray) and last.map.shape == images[0].shape[:2]
