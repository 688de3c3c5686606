"""names.py and kernels/include/fcam/names.h agree (one table, two languages)."""

from __future__ import annotations

import re
from pathlib import Path

from fcam_deploy.ops import names

HEADER = Path(__file__).resolve().parents[2] / "kernels" / "include" / "fcam" / "names.h"


def _header_table() -> dict[str, str | int]:
    out: dict[str, str | int] = {}
    pat = re.compile(r'constexpr\s+(?:const char\*|int)\s+k(\w+)\s*=\s*("([^"]*)"|(\d+))\s*;')
    for m in pat.finditer(HEADER.read_text()):
        snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", m.group(1)).upper()
        out[snake] = m.group(3) if m.group(3) is not None else int(m.group(4))
    return out


def test_header_and_python_tables_agree() -> None:
    assert _header_table() == names.TABLE


def test_table_matches_module_constants() -> None:
    for key, value in names.TABLE.items():
        assert getattr(names, key) == value
    assert names.TORCH_QUALNAME == "fcam::cam_postprocess"
