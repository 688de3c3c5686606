"""The C++ library and the Python package accept the same model input sizes (one bound, defined twice)."""

from __future__ import annotations

import re
from pathlib import Path

from fcam_deploy._limits import MAX_INPUT_SIDE

HEADER = Path(__file__).resolve().parents[2] / "export" / "cpp" / "src" / "internal.hpp"


def test_max_input_side_is_the_same_in_cpp_and_python() -> None:
    m = re.search(r"constexpr int kMaxInputSide = (\d+);", HEADER.read_text(encoding="utf-8"))
    assert m is not None, f"kMaxInputSide not found in {HEADER}"
    assert int(m.group(1)) == MAX_INPUT_SIDE
