"""Reader of the wsolevaluation metadata format (docs/protocol.md §1.2), strict and with typed errors.

A split folder holds, one record per line, comma separated, no header, ``\\n`` line ends::

    image_ids.txt       <image_id>
    class_labels.txt    <image_id>,<int label>
    image_sizes.txt     <image_id>,<width>,<height>          (may be empty: OpenImages)
    localization.txt    <image_id>,<x0>,<y0>,<x1>,<y1>        boxes, one line per box, inclusive pixel coordinates
                  or    <image_id>,<mask_png>,<ignore_png>    masks, one line per instance; only an image's first
                                                              line may name an ignore mask, later ones leave it empty

plus, optionally, ``localization_masks.txt`` (mask-format lines, written by ``fcam data synth`` next to a boxes
``localization.txt`` so one set has both) and ``class_names.txt`` (one name per line, index = label) in the split
folder or its parent. Image ids are paths relative to the image root; mask paths relative to the mask root.

Every violation raises :class:`fcam_deploy.errors.MetadataError` naming the file, the 1-based line and the fix.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from fcam_deploy.errors import MetadataError

__all__ = [
    "Box",
    "WSOLMetadata",
    "load_metadata",
    "load_part_masks",
    "open_dataset",
]

#: An inclusive pixel box ``(x0, y0, x1, y1)``.
Box = tuple[int, int, int, int]

_INT = re.compile(r"[+-]?[0-9]+")
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")

IMAGE_IDS = "image_ids.txt"
CLASS_LABELS = "class_labels.txt"
IMAGE_SIZES = "image_sizes.txt"
LOCALIZATION = "localization.txt"
LOCALIZATION_MASKS = "localization_masks.txt"
CLASS_NAMES = "class_names.txt"
PART_MASKS = "part_masks.txt"


@dataclass(frozen=True)
class WSOLMetadata:
    """One split of a WSOL dataset, validated.

    Attributes:
        image_ids: ids in ``image_ids.txt`` order (paths relative to ``image_root``, ``/``-separated).
        labels: id -> class index in ``[0, num_classes)``.
        sizes: id -> ``(width, height)``; empty when ``image_sizes.txt`` is empty (OpenImages).
        boxes: id -> GT boxes ``(x0, y0, x1, y1)`` inclusive; empty when the split has masks only.
        masks: id -> instance mask paths (relative to ``mask_root``); empty when the split has boxes only.
        ignore: id -> ignore-mask path or ``None``; has a key for every id in ``masks``.
        num_classes: number of classes (``len(class_names)`` when known, else ``max(label) + 1``).
        class_names: names by label, or ``None`` without ``class_names.txt``.
        metadata_dir: the split's metadata folder.
        image_root: folder the image ids are relative to.
        mask_root: folder the mask paths are relative to, or ``None``.
    """

    image_ids: list[str]
    labels: dict[str, int]
    sizes: dict[str, tuple[int, int]]
    boxes: dict[str, list[Box]]
    masks: dict[str, list[str]]
    ignore: dict[str, str | None]
    num_classes: int
    class_names: list[str] | None = None
    metadata_dir: Path = field(default_factory=Path)
    image_root: Path = field(default_factory=Path)
    mask_root: Path | None = None

    def __len__(self) -> int:
        return len(self.image_ids)

    def __iter__(self) -> Iterator[str]:
        return iter(self.image_ids)

    def image_path(self, image_id: str) -> Path:
        """Absolute-or-relative path of an image file (``image_root / image_id``)."""
        return self.image_root / image_id

    def mask_paths(self, image_id: str) -> list[Path]:
        """Paths of the image's instance masks (empty list when it has none)."""
        if self.mask_root is None:
            return []
        return [self.mask_root / m for m in self.masks.get(image_id, [])]

    def ignore_path(self, image_id: str) -> Path | None:
        """Path of the image's ignore mask, or ``None``."""
        ign = self.ignore.get(image_id)
        if ign is None or self.mask_root is None:
            return None
        return self.mask_root / ign

    @property
    def has_boxes(self) -> bool:
        return bool(self.boxes)

    @property
    def has_masks(self) -> bool:
        return bool(self.masks)

    @property
    def has_localization(self) -> bool:
        return bool(self.boxes) or bool(self.masks)


# ------------------------------------------------------------------------------------------------------------
# low-level parsing


def _read_lines(path: Path, *, required: bool = True) -> list[str] | None:
    """Lines of a metadata file (without the ``\\n``), rejecting CR, bad UTF-8 and blank lines."""
    if not path.is_file():
        if required:
            raise MetadataError(path, None, "file not found", "write the file (it may be empty where allowed)")
        return None
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        raise MetadataError(path, 1, "file starts with a UTF-8 byte-order mark", "save it as UTF-8 without BOM")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        lineno = data[: exc.start].count(b"\n") + 1
        raise MetadataError(path, lineno, f"not valid UTF-8 ({exc.reason})", "save the file as UTF-8") from None
    if not text:
        return []
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the final newline
    for i, line in enumerate(lines, 1):
        if "\r" in line:
            raise MetadataError(
                path,
                i,
                "CR character (Windows CRLF line ending?)",
                "convert the file to Unix line endings, e.g. `sed -i 's/\\r$//' FILE`",
            )
        if line.strip() == "":
            raise MetadataError(path, i, "empty line", "remove blank lines")
    return lines


def _check_relpath(path: Path, line: int, rel: str, what: str) -> None:
    """Reject ids/paths that are empty, absolute, contain '..' or backslashes (they must stay in the root)."""
    if rel == "":
        raise MetadataError(path, line, f"empty {what}", f"give the {what} as a path relative to the dataset root")
    if rel != rel.strip():
        raise MetadataError(path, line, f"{what} {rel!r} has leading/trailing whitespace", "remove the spaces")
    if "\\" in rel:
        raise MetadataError(path, line, f"{what} {rel!r} contains a backslash", "use '/' as the path separator")
    if rel.startswith("/") or _WINDOWS_DRIVE.match(rel):
        raise MetadataError(
            path,
            line,
            f"{what} {rel!r} is an absolute path (it would escape the dataset root)",
            "make it relative to the dataset root",
        )
    if ".." in PurePosixPath(rel).parts:
        raise MetadataError(
            path,
            line,
            f"{what} {rel!r} contains '..' (it would escape the dataset root)",
            "make it a path inside the dataset root",
        )


def _check_inside(path: Path, line: int, root: Path, rel: str, what: str) -> Path:
    """The file ``root/rel`` must exist and (after resolving symlinks) stay inside ``root``."""
    full = root / rel
    if not full.is_file():
        raise MetadataError(
            path,
            line,
            f"{what} not found: {full}",
            f"put the file there, or pass the right root folder (now {root})",
        )
    try:
        full.resolve().relative_to(root.resolve())
    except ValueError:
        raise MetadataError(
            path,
            line,
            f"{what} {rel!r} resolves outside the root {root} (symlink?)",
            "keep the files inside the dataset root",
        ) from None
    return full


def _int(path: Path, line: int, text: str, what: str) -> int:
    if not _INT.fullmatch(text):
        raise MetadataError(path, line, f"{what} {text!r} is not an integer", f"write the {what} as a base-10 integer")
    return int(text)


# ------------------------------------------------------------------------------------------------------------
# the reader


def _read_class_names(metadata_dir: Path) -> tuple[list[str] | None, Path | None]:
    for candidate in (metadata_dir / CLASS_NAMES, metadata_dir.parent / CLASS_NAMES):
        lines = _read_lines(candidate, required=False)
        if lines is not None:
            seen: dict[str, int] = {}
            for i, name in enumerate(lines, 1):
                if name in seen:
                    raise MetadataError(
                        candidate,
                        i,
                        f"duplicate class name {name!r} (first on line {seen[name]})",
                        "give every class a unique name",
                    )
                seen[name] = i
            if not lines:
                raise MetadataError(candidate, None, "file is empty", "one class name per line, index = label")
            return lines, candidate
    return None, None


def _parse_mask_lines(
    path: Path,
    lines: list[str],
    index: dict[str, int],
    mask_root: Path | None,
    check_files: bool,
) -> tuple[dict[str, list[str]], dict[str, str | None]]:
    masks: dict[str, list[str]] = {}
    ignore: dict[str, str | None] = {}
    seen_masks: dict[tuple[str, str], int] = {}
    for i, line in enumerate(lines, 1):
        parts = line.split(",")
        if len(parts) != 3:
            raise MetadataError(
                path,
                i,
                f"expected 3 comma-separated fields <image_id>,<mask>,<ignore or empty>, got {len(parts)}",
                "write one line per instance mask: id,mask_path,ignore_path (ignore may be empty)",
            )
        image_id, mask, ign = parts
        if image_id not in index:
            raise MetadataError(path, i, f"image id {image_id!r} is not in {IMAGE_IDS}", "list it there or drop it")
        _check_relpath(path, i, mask, "mask path")
        if ign:
            _check_relpath(path, i, ign, "ignore-mask path")
        first = image_id not in masks
        if not first and ign:
            raise MetadataError(
                path,
                i,
                f"ignore mask given on a later line of {image_id!r}; only the image's first line may name it",
                "move the ignore path to the image's first mask line and leave this field empty",
            )
        if (image_id, mask) in seen_masks:
            raise MetadataError(
                path,
                i,
                f"duplicate mask {mask!r} for {image_id!r} (first on line {seen_masks[(image_id, mask)]})",
                "list each instance mask once",
            )
        seen_masks[(image_id, mask)] = i
        if check_files and mask_root is not None:
            _check_inside(path, i, mask_root, mask, "mask")
            if ign:
                _check_inside(path, i, mask_root, ign, "ignore mask")
        masks.setdefault(image_id, []).append(mask)
        if first:
            ignore[image_id] = ign or None
    return masks, ignore


def _parse_box_lines(
    path: Path,
    lines: list[str],
    index: dict[str, int],
    sizes: dict[str, tuple[int, int]],
) -> dict[str, list[Box]]:
    boxes: dict[str, list[Box]] = {}
    for i, line in enumerate(lines, 1):
        parts = line.split(",")
        if len(parts) != 5:
            raise MetadataError(
                path,
                i,
                f"expected 5 comma-separated fields <image_id>,<x0>,<y0>,<x1>,<y1>, got {len(parts)}",
                "write one box per line as id,x0,y0,x1,y1",
            )
        image_id = parts[0]
        if image_id not in index:
            raise MetadataError(path, i, f"image id {image_id!r} is not in {IMAGE_IDS}", "list it there or drop it")
        x0, y0, x1, y1 = (_int(path, i, v, "coordinate") for v in parts[1:])
        if min(x0, y0, x1, y1) < 0:
            raise MetadataError(
                path, i, f"box {(x0, y0, x1, y1)} has a negative coordinate", "coordinates are pixel indices >= 0"
            )
        if x0 > x1 or y0 > y1:
            raise MetadataError(
                path,
                i,
                f"box {(x0, y0, x1, y1)} has x0 > x1 or y0 > y1",
                "write boxes as x0,y0,x1,y1 with x0 <= x1 and y0 <= y1",
            )
        if image_id in sizes:
            w, h = sizes[image_id]
            if x1 > w - 1 or y1 > h - 1:
                raise MetadataError(
                    path,
                    i,
                    f"box {(x0, y0, x1, y1)} lies outside the {w}x{h} image of {image_id!r}",
                    f"clip it to 0 <= x <= {w - 1}, 0 <= y <= {h - 1} (inclusive coordinates) or fix {IMAGE_SIZES}",
                )
        boxes.setdefault(image_id, []).append((x0, y0, x1, y1))
    return boxes


def load_metadata(
    metadata_dir: str | Path,
    image_root: str | Path,
    mask_root: str | Path | None = None,
    *,
    num_classes: int | None = None,
    check_files: bool = True,
) -> WSOLMetadata:
    """Read and validate one split of wsolevaluation metadata.

    Args:
        metadata_dir: the split folder holding ``image_ids.txt`` etc.
        image_root: folder the image ids are relative to.
        mask_root: folder the mask paths are relative to (needed to check mask files; ``None`` skips that check).
        num_classes: the number of classes, when known (labels must be below it); else ``class_names.txt``
            (split folder or its parent) decides, else ``max(label) + 1``.
        check_files: check that every image (and mask, with ``mask_root``) exists inside its root. Images are
            not decoded here (see :func:`fcam_deploy.data.load_image_rgb`).

    Returns:
        A validated :class:`WSOLMetadata`.

    Raises:
        MetadataError: naming file, line, problem and fix, for: missing file, CR/CRLF, blank line, malformed
            line, id escaping the root (``..``, absolute, symlink), missing image/mask, duplicate id, ids that
            differ between files, label not an int or out of range, size not a positive int, box outside the
            image or with x0 > x1 / y0 > y1, mixed box/mask lines, ignore mask on a non-first line, an image
            without localization in a non-empty ``localization.txt``.

    An empty ``localization.txt`` is valid (training splits: OpenImages/ILSVRC train ship it empty); then
    ``boxes`` and ``masks`` are empty and :attr:`WSOLMetadata.has_localization` is False.
    """
    mdir = Path(metadata_dir)
    iroot = Path(image_root)
    mroot = Path(mask_root) if mask_root is not None else None
    if not mdir.is_dir():
        raise MetadataError(mdir, None, "metadata folder not found", "pass the split folder holding image_ids.txt")

    # image_ids.txt
    ids_path = mdir / IMAGE_IDS
    ids = _read_lines(ids_path)
    assert ids is not None
    if not ids:
        raise MetadataError(ids_path, None, "no image ids", "list one image path per line")
    index: dict[str, int] = {}
    for i, image_id in enumerate(ids, 1):
        if "," in image_id:
            raise MetadataError(
                ids_path,
                i,
                f"image id {image_id!r} contains a comma",
                "rename the file: commas separate fields in the other metadata files",
            )
        _check_relpath(ids_path, i, image_id, "image id")
        if image_id in index:
            raise MetadataError(
                ids_path,
                i,
                f"duplicate image id {image_id!r} (first on line {index[image_id]})",
                "list every image once",
            )
        index[image_id] = i
        if check_files:
            _check_inside(ids_path, i, iroot, image_id, "image")

    # class_names.txt (optional)
    class_names, names_path = _read_class_names(mdir)
    if num_classes is not None:
        if num_classes < 1:
            raise MetadataError(mdir, None, f"num_classes={num_classes} must be >= 1", "pass a positive count")
        if class_names is not None and len(class_names) != num_classes:
            raise MetadataError(
                names_path or mdir,
                None,
                f"{len(class_names)} class names but num_classes={num_classes}",
                "make them agree",
            )
    limit = num_classes if num_classes is not None else (len(class_names) if class_names is not None else None)

    # class_labels.txt
    lab_path = mdir / CLASS_LABELS
    lab_lines = _read_lines(lab_path)
    assert lab_lines is not None
    labels: dict[str, int] = {}
    label_line: dict[str, int] = {}
    for i, line in enumerate(lab_lines, 1):
        parts = line.split(",")
        if len(parts) != 2:
            raise MetadataError(
                lab_path, i, f"expected 2 comma-separated fields <image_id>,<label>, got {len(parts)}", "write id,label"
            )
        image_id, text = parts
        if image_id not in index:
            raise MetadataError(
                lab_path, i, f"image id {image_id!r} is not in {IMAGE_IDS}", "make the ids agree between the files"
            )
        if image_id in labels:
            raise MetadataError(
                lab_path,
                i,
                f"duplicate label line for {image_id!r} (first on line {label_line[image_id]})",
                "give every image exactly one label",
            )
        label = _int(lab_path, i, text, "label")
        if label < 0 or (limit is not None and label >= limit):
            bound = f"[0, {limit})" if limit is not None else ">= 0"
            raise MetadataError(
                lab_path,
                i,
                f"label {label} out of range {bound}",
                "fix the label or the class list (class_names.txt / num_classes)",
            )
        labels[image_id] = label
        label_line[image_id] = i
    missing = [k for k in ids if k not in labels]
    if missing:
        raise MetadataError(
            lab_path,
            None,
            f"no label for {len(missing)} image(s), first {missing[0]!r} ({IMAGE_IDS} line {index[missing[0]]})",
            "give every image exactly one label",
        )
    n_classes = limit if limit is not None else max(labels.values()) + 1

    # image_sizes.txt (may be empty)
    size_path = mdir / IMAGE_SIZES
    size_lines = _read_lines(size_path)
    assert size_lines is not None
    sizes: dict[str, tuple[int, int]] = {}
    size_line: dict[str, int] = {}
    for i, line in enumerate(size_lines, 1):
        parts = line.split(",")
        if len(parts) != 3:
            raise MetadataError(
                size_path,
                i,
                f"expected 3 comma-separated fields <image_id>,<width>,<height>, got {len(parts)}",
                "write id,width,height",
            )
        image_id = parts[0]
        if image_id not in index:
            raise MetadataError(
                size_path, i, f"image id {image_id!r} is not in {IMAGE_IDS}", "make the ids agree between the files"
            )
        if image_id in sizes:
            raise MetadataError(
                size_path,
                i,
                f"duplicate size line for {image_id!r} (first on line {size_line[image_id]})",
                "give every image one size",
            )
        w = _int(size_path, i, parts[1], "width")
        h = _int(size_path, i, parts[2], "height")
        if w < 1 or h < 1:
            raise MetadataError(size_path, i, f"size {w}x{h} is not positive", "write the image's pixel size")
        sizes[image_id] = (w, h)
        size_line[image_id] = i
    if sizes:
        missing = [k for k in ids if k not in sizes]
        if missing:
            raise MetadataError(
                size_path,
                None,
                f"no size for {len(missing)} image(s), first {missing[0]!r} ({IMAGE_IDS} line {index[missing[0]]})",
                "give every image a size, or leave the file empty",
            )

    # localization.txt (boxes or masks), optional localization_masks.txt (masks)
    loc_path = mdir / LOCALIZATION
    loc_lines = _read_lines(loc_path)
    assert loc_lines is not None
    boxes: dict[str, list[Box]] = {}
    masks: dict[str, list[str]] = {}
    ignore: dict[str, str | None] = {}
    if loc_lines:
        n_fields = loc_lines[0].count(",") + 1
        if n_fields == 5:
            for i, line in enumerate(loc_lines, 1):
                if line.count(",") + 1 == 3:
                    raise MetadataError(
                        loc_path, i, "mask line in a file of box lines (line 1 is a box)", "use one format per file"
                    )
            boxes = _parse_box_lines(loc_path, loc_lines, index, sizes)
            if not sizes:
                raise MetadataError(
                    size_path,
                    None,
                    "empty, but localization.txt has boxes (boxes need sizes)",
                    "write id,width,height for every image",
                )
        elif n_fields == 3:
            for i, line in enumerate(loc_lines, 1):
                if line.count(",") + 1 == 5:
                    raise MetadataError(
                        loc_path, i, "box line in a file of mask lines (line 1 is a mask)", "use one format per file"
                    )
            masks, ignore = _parse_mask_lines(loc_path, loc_lines, index, mroot, check_files)
        else:
            raise MetadataError(
                loc_path,
                1,
                f"expected 5 fields (box) or 3 fields (mask), got {n_fields}",
                "write id,x0,y0,x1,y1 or id,mask,ignore",
            )
    extra_path = mdir / LOCALIZATION_MASKS
    extra = _read_lines(extra_path, required=False)
    if extra:
        if masks:
            raise MetadataError(
                extra_path,
                None,
                f"masks given twice ({LOCALIZATION} already lists masks)",
                "keep one of the two mask files",
            )
        masks, ignore = _parse_mask_lines(extra_path, extra, index, mroot, check_files)
    for kind, table, src in (("box", boxes, loc_path), ("mask", masks, extra_path if extra else loc_path)):
        if table:
            missing = [k for k in ids if k not in table]
            if missing:
                raise MetadataError(
                    src,
                    None,
                    f"no {kind} for {len(missing)} image(s), first {missing[0]!r} "
                    f"({IMAGE_IDS} line {index[missing[0]]})",
                    f"give every image at least one {kind}",
                )

    return WSOLMetadata(
        image_ids=list(ids),
        labels=labels,
        sizes=sizes,
        boxes=boxes,
        masks=masks,
        ignore=ignore,
        num_classes=int(n_classes),
        class_names=class_names,
        metadata_dir=mdir,
        image_root=iroot,
        mask_root=mroot,
    )


def open_dataset(root: str | Path, split: str, *, check_files: bool = True) -> WSOLMetadata:
    """Load split ``split`` of a dataset in the DESIGN.md layout: ``root/metadata/<split>/``, images under
    ``root/images/``, masks under ``root/masks/`` (when that folder exists)."""
    base = Path(root)
    mdir = base / "metadata" / split
    if not mdir.is_dir():
        have = (
            sorted(p.name for p in (base / "metadata").iterdir() if p.is_dir()) if (base / "metadata").is_dir() else []
        )
        raise MetadataError(
            mdir,
            None,
            f"split {split!r} not found (splits here: {have or 'none'})",
            "pass an existing split, or create the dataset with `fcam data synth --out DIR`",
        )
    masks = base / "masks"
    return load_metadata(mdir, base / "images", masks if masks.is_dir() else None, check_files=check_files)


def load_part_masks(root: str | Path, split: str) -> dict[str, Path]:
    """Head (discriminative part) masks of a synthetic set: image id -> ``root/parts/<...>_head.png``.

    Reads ``root/metadata/<split>/part_masks.txt`` (written by ``fcam data synth``; not part of the standard
    format). Raises :class:`MetadataError` when it is missing or malformed."""
    base = Path(root)
    path = base / "metadata" / split / PART_MASKS
    lines = _read_lines(path)
    assert lines is not None
    out: dict[str, Path] = {}
    for i, line in enumerate(lines, 1):
        parts = line.split(",")
        if len(parts) != 2:
            raise MetadataError(path, i, f"expected 2 fields <image_id>,<part_png>, got {len(parts)}", "write id,path")
        _check_relpath(path, i, parts[0], "image id")
        _check_relpath(path, i, parts[1], "part mask path")
        if parts[0] in out:
            raise MetadataError(path, i, f"duplicate image id {parts[0]!r}", "list every image once")
        out[parts[0]] = base / "parts" / parts[1]
    return out
