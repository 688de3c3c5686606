"""Shared helpers for tests/models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

#: ../shared/data beside the repository root (CI runs in a fresh clone with ../shared next to it).
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    torch.manual_seed(0)


def expected_decoder_params(taps: tuple[int, ...], widths: tuple[int, ...], center: bool) -> int:
    """Closed-form parameter count of the U-Net decoder + 2-channel head of docs/method.md §1.4.

    Conv3×3 weights (no bias) + BN affine (2 per channel) twice per block; the center block is two C→C
    conv-BN; the head is Conv3×3(last→2) with bias.
    """
    deep = taps[::-1]
    skips = list(deep[1:]) + [0]
    ins = [deep[0]] + list(widths[:-1])
    n = 0
    if center:
        c = deep[0]
        n += 2 * (9 * c * c + 2 * c)
    for i, s, o in zip(ins, skips, widths):
        n += 9 * (i + s) * o + 2 * o + 9 * o * o + 2 * o
    n += 9 * widths[-1] * 2 + 2
    return n
