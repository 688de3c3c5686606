"""Whole-dataset evaluation: saved or in-memory maps + WSOL metadata -> MaxBoxAcc / MaxBoxAccV2 / PxAP.

Maps live in the 224 x 224 frame; GT boxes are scaled into it with ``int(x * 224 / W)``; GT masks are resized
into it with nearest neighbour. Saved maps follow the reference layout ``<root>/<image_id>.npy`` (the image
extension kept, e.g. ``val/a/1.jpg.npy``) so the reference code can score them too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from fcam_deploy._io import atomic_write_bytes
from fcam_deploy.errors import ImageError, InputError, MapError
from fcam_deploy.metrics.evaluators import (
    BoxEvaluator,
    Engine,
    MaskEvaluator,
    load_gt_mask,
)
from fcam_deploy.metrics.protocol import RESIZE_LENGTH, resize_box, validate_scoremap

__all__ = [
    "MANIFEST_FILE",
    "MapsWriter",
    "MetadataLike",
    "check_file_digest",
    "check_image_sizes",
    "check_maps_folder",
    "evaluate_maps",
    "load_map",
    "map_path",
    "mask_file",
    "read_maps_manifest",
    "save_map",
]


class MetadataLike(Protocol):
    """What :func:`evaluate_maps` reads of ``fcam_deploy.data.WSOLMetadata`` (read-only: a frozen dataclass fits)."""

    @property
    def image_ids(self) -> list[str]: ...
    @property
    def sizes(self) -> dict[str, tuple[int, int]]: ...
    @property
    def boxes(self) -> dict[str, list[tuple[int, int, int, int]]]: ...
    @property
    def masks(self) -> dict[str, list[str]]: ...
    @property
    def ignore(self) -> dict[str, str | None]: ...


def map_path(root: str | Path, image_id: str) -> Path:
    """``<root>/<image_id>.npy`` (numpy's ``np.save`` naming, image extension kept)."""
    rel = Path(image_id + ".npy")
    if rel.is_absolute() or ".." in rel.parts:
        raise InputError(f"image id {image_id!r} escapes the map folder (absolute path or '..')")
    return Path(root) / rel


#: Largest ``.npy`` header accepted (NumPy writes 128 bytes for a 2-D float array).
_MAX_NPY_HEADER = 4096


def _parse_npy(data: bytes, path: Path, size: int) -> np.ndarray:
    """Parse ``.npy`` bytes; the header (shape, dtype) is checked before any array is built."""
    import io

    from numpy.lib import format as npy

    fh = io.BytesIO(data)
    try:
        version = npy.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = npy.read_array_header_1_0(fh, max_header_size=_MAX_NPY_HEADER)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = npy.read_array_header_2_0(fh, max_header_size=_MAX_NPY_HEADER)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, OSError, EOFError, SyntaxError) as exc:
        raise MapError(f"{path}: not a readable .npy array ({exc})") from exc
    if tuple(shape) != (size, size):
        raise MapError(
            f"{path}: score map must be {size}x{size} (the evaluation frame), got shape {tuple(shape)}; "
            f"resize it to {size}x{size} before saving"
        )
    if dtype.kind != "f" or dtype.hasobject or dtype.itemsize > 8:
        raise MapError(f"{path}: score map must hold float16/32/64 values, got dtype {dtype}")
    offset = fh.tell()
    need = size * size * dtype.itemsize
    if len(data) - offset != need:
        raise MapError(f"{path}: truncated or padded .npy ({len(data) - offset} data bytes, expected {need})")
    arr = np.frombuffer(data, dtype=dtype, count=size * size, offset=offset)
    return arr.reshape((size, size), order="F" if fortran else "C")


def load_map(root: str | Path, image_id: str, size: int = RESIZE_LENGTH, sha256: str | None = None) -> np.ndarray:
    """Load and validate ``<root>/<image_id>.npy``.

    The file size and the ``.npy`` header (shape, dtype) are checked before any array is allocated, so a tiny
    file declaring a huge shape costs nothing; pickled (object) arrays are refused.

    Args:
        root: the maps folder.
        image_id: the image id (``<root>/<image_id>.npy``).
        size: the map side (224, the evaluation frame).
        sha256: when given (from the folder's manifest), the file's SHA-256 must equal it.

    Returns:
        float64 (size, size) in [0, 1].

    Raises:
        MapError: missing file, not a .npy float array, wrong shape, truncated, NaN, outside [0, 1], or a digest
            that differs from the manifest's (a map of another run).
    """
    path = map_path(root, image_id)
    if not path.is_file():
        raise MapError(f"{path}: score map missing for image {image_id!r} (expected <maps>/<image_id>.npy)")
    limit = _MAX_NPY_HEADER + 16 + size * size * 8
    try:
        nbytes = path.stat().st_size
        if nbytes > limit:
            raise MapError(f"{path}: {nbytes} bytes is too large for a {size}x{size} float map (at most {limit})")
        data = path.read_bytes()
    except OSError as exc:
        raise MapError(f"{path}: cannot read ({exc})") from exc
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise MapError(
            f"{path}: this map is not the one the folder's {MANIFEST_FILE} records (a map of another run was "
            "written into the folder); rerun `fcam eval --save-maps` into an empty folder"
        )
    return validate_scoremap(_parse_npy(data, path, size).astype(np.float64), str(path))


def _npy_bytes(arr: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def save_map(root: str | Path, image_id: str, scoremap: np.ndarray) -> Path:
    """Save a map as ``<root>/<image_id>.npy`` (float32, parents created), atomically. Returns the path."""
    return _save_map(root, image_id, scoremap)[0]


def _save_map(root: str | Path, image_id: str, scoremap: np.ndarray) -> tuple[Path, str]:
    s = validate_scoremap(np.asarray(scoremap), image_id)
    path = map_path(root, image_id)
    data = _npy_bytes(np.ascontiguousarray(s, dtype=np.float32))
    atomic_write_bytes(path, data)
    return path, hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------------------------ maps folders

#: The manifest of a maps folder written by ``fcam eval --save-maps``: written first as ``"complete": false``
#: (so an interrupted run is never mistaken for a finished one) and rewritten last with every map's SHA-256.
MANIFEST_FILE = "maps_manifest.json"
MANIFEST_FORMAT = "fcam-deploy-maps"
MANIFEST_VERSION = 1


class MapsWriter:
    """Writes one complete maps folder: ``begin()``, ``add(image_id, map)`` per image, ``finish(**info)``.

    ``begin`` replaces any earlier manifest by an incomplete one *before* the first map is written, every map is
    written atomically, and ``finish`` writes the manifest (run info, map count, the SHA-256 of every map and of
    ``predictions.json``) last. A folder therefore reads as complete only after ``finish``, and only with the
    maps of that run.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.digests: dict[str, str] = {}
        self.files: dict[str, str] = {}

    def begin(self, **info: Any) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise MapError(f"{self.root} exists and is not a folder; give a folder for the maps")
        self.root.mkdir(parents=True, exist_ok=True)
        _write_manifest(self.root, {"complete": False, **info})

    def add(self, image_id: str, scoremap: np.ndarray) -> Path:
        """Save one map atomically (``<root>/<image_id>.npy``, float32) and record its digest."""
        path, digest = _save_map(self.root, image_id, scoremap)
        self.digests[image_id] = digest
        return path

    def add_file(self, name: str, data: bytes) -> None:
        """Write an extra file of the run (e.g. ``predictions.json``), recorded by digest in the manifest."""
        atomic_write_bytes(self.root / name, data)
        self.files[name] = hashlib.sha256(data).hexdigest()

    def finish(self, **info: Any) -> None:
        """Write the complete manifest (last)."""
        _write_manifest(
            self.root,
            {
                "complete": True,
                **info,
                "num_maps": len(self.digests),
                "files": dict(self.files),
                "maps": dict(self.digests),
            },
        )


def _write_manifest(root: Path, body: dict[str, Any]) -> None:
    doc = {"format": MANIFEST_FORMAT, "format_version": MANIFEST_VERSION, **body}
    atomic_write_bytes(root / MANIFEST_FILE, (json.dumps(doc, indent=1, allow_nan=False) + "\n").encode())


def read_maps_manifest(root: str | Path) -> dict[str, Any] | None:
    """The manifest of a maps folder, or ``None`` when it has none.

    Raises:
        MapError: the manifest is unreadable or not of this format.
    """
    path = Path(root) / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        if path.stat().st_size > 64 * 2**20:
            raise MapError(f"{path}: larger than 64 MiB; not a manifest written by fcam eval")
        doc = json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constant)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise MapError(f"{path}: unreadable maps manifest ({exc}); rerun `fcam eval --save-maps`") from exc
    if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT:
        raise MapError(f"{path}: not an fcam-deploy maps manifest")
    if doc.get("format_version") != MANIFEST_VERSION:
        raise MapError(
            f"{path}: maps manifest version {doc.get('format_version')!r}, this reader supports "
            f"{MANIFEST_VERSION}; rerun `fcam eval --save-maps` with this version"
        )
    if doc.get("complete") is True:
        maps, files = doc.get("maps"), doc.get("files", {})
        ok = (
            isinstance(maps, dict)
            and isinstance(files, dict)
            and all(isinstance(k, str) and isinstance(v, str) for d in (maps, files) for k, v in d.items())
            and doc.get("num_maps") == len(maps)
        )
        if not ok:
            raise MapError(f"{path}: malformed maps manifest (maps / files / num_maps); rerun `fcam eval --save-maps`")
    return doc


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def check_maps_folder(
    root: str | Path, image_ids: Iterable[str], *, require_manifest: bool = True, split: str | None = None
) -> dict[str, Any] | None:
    """Check that a maps folder is one complete run covering ``image_ids``; returns its manifest.

    Raises:
        MapError: no manifest (with ``require_manifest``), an interrupted run, another split, or ids without a map
            in the manifest.
    """
    root = Path(root)
    doc = read_maps_manifest(root)
    if doc is None:
        if require_manifest:
            raise MapError(
                f"{root}: no {MANIFEST_FILE}, so nothing says these maps are one complete run (an interrupted "
                "`fcam eval --save-maps`?). Rerun it, or pass --no-manifest to score maps written by another tool "
                "without that check"
            )
        return None
    if doc.get("complete") is not True:
        raise MapError(
            f"{root}: the `fcam eval --save-maps` run that writes this folder never finished ({MANIFEST_FILE} says "
            "complete: false), so its maps may mix two runs; rerun it"
        )
    if split is not None and doc.get("split") not in (None, split):
        raise MapError(f"{root}: maps of split {doc.get('split')!r}, scored against split {split!r}")
    maps = doc["maps"]
    missing = [i for i in image_ids if i not in maps]
    if missing:
        raise MapError(
            f"{root}: the run recorded in {MANIFEST_FILE} has no map for {len(missing)} image(s) of the metadata "
            f"(first {missing[0]!r}; it wrote {doc['num_maps']}, e.g. with --limit); rerun it on the whole split"
        )
    return doc


def check_file_digest(path: Path, manifest: Mapping[str, Any], name: str) -> None:
    """Raise :class:`MapError` when ``path`` differs from the manifest's record of the run's file ``name``."""
    want = manifest.get("files", {}).get(name)
    if want is None:
        return
    try:
        got = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise MapError(f"{path}: cannot read ({exc})") from exc
    if got != want:
        raise MapError(f"{path}: not the {name} of the run recorded in {MANIFEST_FILE} (rewritten by another run)")


# ------------------------------------------------------------------------------------------------ ground truth


def mask_file(mask_root: str | Path, rel: str) -> Path:
    """``mask_root / rel``, refused when it resolves (through a symlink) outside ``mask_root``.

    Raises:
        ImageError: the path escapes the mask root.
    """
    root = Path(mask_root)
    full = root / rel
    try:
        full.resolve().relative_to(root.resolve())
    except ValueError:
        raise ImageError(
            f"mask {rel!r} resolves outside the mask root {root} (symlink?); keep the masks inside the dataset root"
        ) from None
    return full


def check_image_sizes(meta: MetadataLike, image_ids: Iterable[str], image_root: str | Path | None) -> None:
    """``image_sizes.txt`` must agree with the images' own headers (read without decoding pixels).

    Images that do not exist under ``image_root`` are not checked (``fcam score`` on a metadata folder without the
    images); ``image_root=None`` skips the check.

    Raises:
        MetadataError: an image's stored size differs from its ``image_sizes.txt`` entry.
    """
    if image_root is None or not meta.sizes:
        return
    from fcam_deploy.data.images import image_size
    from fcam_deploy.errors import MetadataError

    root = Path(image_root)
    for image_id in image_ids:
        listed = meta.sizes.get(image_id)
        path = root / image_id
        if listed is None or not path.is_file():
            continue
        real = image_size(path)
        if real != tuple(listed):
            raise MetadataError(
                Path(getattr(meta, "metadata_dir", Path("."))) / "image_sizes.txt",
                None,
                f"{image_id!r} is {real[0]}x{real[1]} on disk but listed as {listed[0]}x{listed[1]} (boxes and "
                "masks would be scaled wrongly)",
                "write the image's real width,height",
            )


def evaluate_maps(
    maps: Mapping[str, np.ndarray] | Callable[[str], np.ndarray],
    meta: MetadataLike,
    mask_root: str | Path | None = None,
    cam_curve_interval: float = 0.01,
    iou_thresholds: Sequence[int] = (30, 50, 70),
    engine: Engine = "auto",
    predictions: Mapping[str, tuple[int, Sequence[int]]] | None = None,
    image_ids: Iterable[str] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Evaluate 224 x 224 maps of a WSOL set.

    Args:
        maps: image id -> float (224, 224) map in [0, 1], as a mapping or a loader function.
        meta: the set's metadata (``fcam_deploy.data.WSOLMetadata``): ids, sizes, boxes (original pixels),
            masks and ignore paths (relative to ``mask_root``).
        mask_root: folder the mask paths are relative to; PxAP is computed only when it is given and the images
            have masks.
        cam_curve_interval: threshold step (0.01 or 0.001).
        iou_thresholds: percent.
        engine: box engine ("auto", "fast", "reference").
        predictions: image id -> (GT label, classes ordered by score) for top-1/top-5 localization.
        image_ids: subset / order of ids to evaluate (default: all of ``meta.image_ids``).
        progress: show a tqdm bar.

    Returns:
        ``BoxEvaluator.compute()`` keys with ``PxAP`` filled in; box keys are None when the set has no boxes,
        ``PxAP`` is None without masks.
    """
    ids = list(meta.image_ids if image_ids is None else image_ids)
    if not ids:
        raise InputError("no image to evaluate")
    get = maps.__getitem__ if isinstance(maps, Mapping) else maps
    with_boxes = [i for i in ids if meta.boxes.get(i)]
    if with_boxes and len(with_boxes) != len(ids):
        missing = next(i for i in ids if not meta.boxes.get(i))
        raise InputError(f"image {missing!r} has no GT box while others do: box metrics need a box for every image")
    with_mask_list = [i for i in ids if meta.masks.get(i)]
    if with_mask_list and len(with_mask_list) != len(ids):
        missing = next(i for i in ids if not meta.masks.get(i))
        raise InputError(f"image {missing!r} has no GT mask while others do: PxAP needs a mask for every image")
    with_masks = mask_root is not None and bool(with_mask_list)
    box = (
        BoxEvaluator(iou_thresholds=iou_thresholds, cam_curve_interval=cam_curve_interval, engine=engine)
        if with_boxes
        else None
    )
    mask = MaskEvaluator(cam_curve_interval=cam_curve_interval) if with_masks else None
    it: Iterable[str] = ids
    if progress:
        from tqdm import tqdm

        it = tqdm(ids, desc="evaluate", unit="map")
    for image_id in it:
        try:
            scoremap = get(image_id)
        except KeyError as exc:
            raise MapError(f"no score map for image {image_id!r}") from exc
        s = validate_scoremap(np.asarray(scoremap) if not isinstance(scoremap, np.ndarray) else scoremap, image_id)
        if s.shape != (RESIZE_LENGTH, RESIZE_LENGTH):
            raise MapError(f"score map of {image_id!r} must be {RESIZE_LENGTH}x{RESIZE_LENGTH}, got {s.shape}")
        if box is not None:
            size = meta.sizes.get(image_id)
            if size is None:
                raise InputError(f"image {image_id!r} has boxes but no size in image_sizes.txt")
            gt = [resize_box(b, size) for b in meta.boxes[image_id]]
            label = preds = None
            if predictions is not None:
                label, preds = predictions[image_id]
            box.accumulate(s, gt, label=label, preds=preds)
        if mask is not None:
            assert mask_root is not None
            ign = meta.ignore.get(image_id)
            gm = load_gt_mask(
                [mask_file(mask_root, p) for p in meta.masks[image_id]],
                mask_file(mask_root, ign) if ign else None,
                image_size=meta.sizes.get(image_id),
            )
            mask.accumulate(s, gm)
    if box is not None:
        res = box.compute()
    else:
        res = {
            "MaxBoxAcc": None,
            "MaxBoxAccV2": None,
            "PxAP": None,
            "per_iou": None,
            "per_iou_v1": None,
            "best_threshold": {},
            "num_images": len(ids),
            "top1_loc": None,
            "top5_loc": None,
            "cam_curve_interval": float(cam_curve_interval),
        }
    if mask is not None:
        res["PxAP"] = mask.compute()["PxAP"]
    res["num_images"] = len(ids)
    return res
