"""Size limits shared by every reader of untrusted files (checked before anything is allocated).

A model's input side is bounded so that a few bytes of metadata (``config.json``, ONNX ``metadata_props``) can
never ask for a gigantic input tensor; the largest backbone input in use is 448 px (the paper's 224 with room
for high-resolution fine-tuning), so 4096 leaves an order of magnitude of headroom.
"""

from __future__ import annotations

import math
import numbers

__all__ = ["MAX_INPUT_SIDE", "is_finite_number"]

#: Largest accepted model input side (H or W) in pixels, for checkpoints and exported models.
MAX_INPUT_SIDE: int = 4096


def is_finite_number(value: object) -> bool:
    """True for a real number (int, float, NumPy scalar; not a bool) that is neither NaN nor infinite."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))
