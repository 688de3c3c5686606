"""The rows ``fcam localize`` writes: one per image, a Parquet table with a fixed schema.

============== ======================== ===========================================================================
column         Arrow type               meaning
============== ======================== ===========================================================================
``image``      string                   the image's name: path relative to the input root, ``/`` separators
``width``      int32                    original width in pixels (null on error)
``height``     int32                    original height in pixels (null on error)
``class_index`` int32                   predicted class (``Prediction.class_index``; null on error)
``class_name`` string                   its name from the model metadata (null on error)
``score``      float64                  softmax probability of the class, in [0, 1] (null on error)
``boxes``      list<list<int32>>        ``[[x0, y0, x1, y1], ...]`` inclusive, original pixels, largest first
                                        (``Prediction.boxes``; empty list when the mask is empty; null on error)
``tau``        float64                  mask threshold the boxes come from (null on error)
``model_sha256`` string                 SHA-256 of the model (:func:`model_sha256`), on every row
``map_file``   string                   ``<image>.npy`` under ``--save-maps`` (float32 (h, w) map in [0, 1]), or null
``error``      string                   null, or why the image has no prediction (unreadable file, ...)
============== ======================== ===========================================================================

Rows are sorted by ``image``. The file's key/value metadata holds ``fcam_deploy.localize`` = JSON
``{"schema_version": 1, "model_sha256": ...}``. Nothing in a file depends on the engine, the actor count, batch
sizes or the time of the run, so the same images and model give a byte-identical file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from fcam_deploy.errors import ConfigError, ModelFormatError
from fcam_deploy.scale._deps import require

__all__ = [
    "COLUMNS",
    "FILE_METADATA_KEY",
    "SCHEMA_VERSION",
    "error_row",
    "model_sha256",
    "prediction_row",
    "read_rows",
    "row_schema",
    "rows_to_table",
]

#: Column names in file order.
COLUMNS: tuple[str, ...] = (
    "image",
    "width",
    "height",
    "class_index",
    "class_name",
    "score",
    "boxes",
    "tau",
    "model_sha256",
    "map_file",
    "error",
)
#: Version of the row schema above (in the file metadata).
SCHEMA_VERSION = 1
#: Parquet key/value metadata key holding the JSON file facts.
FILE_METADATA_KEY = "fcam_deploy.localize"


def row_schema(model_hash: str | None = None) -> Any:
    """The ``pyarrow.Schema`` of the rows (with the file metadata when ``model_hash`` is given)."""
    pa = require("pyarrow", "fcam localize")
    fields = [
        pa.field("image", pa.string(), nullable=False),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("class_index", pa.int32()),
        pa.field("class_name", pa.string()),
        pa.field("score", pa.float64()),
        pa.field("boxes", pa.list_(pa.list_(pa.int32()))),
        pa.field("tau", pa.float64()),
        pa.field("model_sha256", pa.string(), nullable=False),
        pa.field("map_file", pa.string()),
        pa.field("error", pa.string()),
    ]
    meta = None
    if model_hash is not None:
        meta = {
            FILE_METADATA_KEY: json.dumps(
                {"schema_version": SCHEMA_VERSION, "model_sha256": model_hash}, sort_keys=True
            )
        }
    return pa.schema(fields, metadata=meta)


def prediction_row(name: str, pred: Any, model_hash: str, map_file: str | None = None) -> dict[str, Any]:
    """The row of one :class:`fcam_deploy.runtime.Prediction` (``pred.size`` is ``(h, w)``)."""
    h, w = pred.size
    return {
        "image": name,
        "width": int(w),
        "height": int(h),
        "class_index": int(pred.class_index),
        "class_name": str(pred.class_name),
        "score": float(pred.score),
        "boxes": [[int(v) for v in b] for b in pred.boxes],
        "tau": float(pred.tau),
        "model_sha256": model_hash,
        "map_file": map_file,
        "error": None,
    }


def error_row(name: str, reason: str, model_hash: str) -> dict[str, Any]:
    """The row of an image that has no prediction; ``reason`` says why."""
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update(image=name, model_sha256=model_hash, error=str(reason) or "unknown error")
    return row


def rows_to_table(rows: Iterable[Mapping[str, Any]], model_hash: str | None = None) -> Any:
    """Rows -> ``pyarrow.Table`` with :func:`row_schema`."""
    pa = require("pyarrow", "fcam localize")
    return pa.Table.from_pylist(list(rows), schema=row_schema(model_hash))


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_sha256(path: str | Path) -> str:
    """SHA-256 identifying a model: of the file's bytes (``.onnx``, ``.plan``), or for a checkpoint directory of
    the lines ``<relative path>\\0<sha256 of the file>\\n`` of its regular files in sorted order.

    Raises:
        ModelFormatError: the path does not exist.
    """
    p = Path(path)
    if p.is_file():
        return _file_digest(p)
    if p.is_dir():
        h = hashlib.sha256()
        for f in sorted(q for q in p.rglob("*") if q.is_file()):
            h.update(f"{f.relative_to(p).as_posix()}\0{_file_digest(f)}\n".encode())
        return h.hexdigest()
    raise ModelFormatError(f"{p}: no such model file or checkpoint directory")


def read_rows(path: str | Path) -> Any:
    """Read a file written by ``fcam localize`` (or one of its committed parts) as a ``pyarrow.Table``.

    Raises:
        ConfigError: not a Parquet file, or its columns are not :data:`COLUMNS` with the schema's types.
    """
    pq = require("pyarrow.parquet", "fcam localize")
    p = Path(path)
    try:
        table = pq.read_table(p)
    except Exception as exc:  # pyarrow raises ArrowInvalid / OSError subclasses of its own
        raise ConfigError(f"{p}: not a readable Parquet file ({type(exc).__name__}: {exc})") from exc
    want = row_schema()
    if table.schema.remove_metadata() != want:
        raise ConfigError(
            f"{p}: not an fcam localize result (columns {table.schema.names}, expected {list(COLUMNS)} with the "
            "documented types); fix: choose another --out"
        )
    return table
