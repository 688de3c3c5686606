"""Metadata reader: the public CUB / ILSVRC / OpenImages line shapes load unmodified; every bad input raises a
MetadataError naming the right file and line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fcam_deploy.data import WSOLMetadata, load_metadata, load_part_masks, open_dataset
from fcam_deploy.errors import MetadataError

# First lines of the public wsolevaluation split files (metadata/<DATASET>/<split>/), copied byte for byte.
CUB_VAL = {
    "image_ids.txt": "001.Black_footed_Albatross/30107316117.jpg\n"
    "001.Black_footed_Albatross/33844942958.jpg\n"
    "001.Black_footed_Albatross/44272303765.jpg\n",
    "class_labels.txt": "001.Black_footed_Albatross/30107316117.jpg,0\n"
    "001.Black_footed_Albatross/33844942958.jpg,0\n"
    "001.Black_footed_Albatross/44272303765.jpg,0\n",
    "image_sizes.txt": "001.Black_footed_Albatross/30107316117.jpg,560,419\n"
    "001.Black_footed_Albatross/33844942958.jpg,576,432\n"
    "001.Black_footed_Albatross/44272303765.jpg,999,587\n",
    # the public CUB localization.txt files end without a final newline
    "localization.txt": "001.Black_footed_Albatross/30107316117.jpg,176,136,459,291\n"
    "001.Black_footed_Albatross/33844942958.jpg,44,183,426,254\n"
    "001.Black_footed_Albatross/44272303765.jpg,437,42,834,422",
}

ILSVRC_TEST = {
    "image_ids.txt": "val/ILSVRC2012_val_00000001.JPEG\nval/ILSVRC2012_val_00000002.JPEG\n"
    "val/ILSVRC2012_val_00000003.JPEG\n",
    "class_labels.txt": "val/ILSVRC2012_val_00000001.JPEG,65\nval/ILSVRC2012_val_00000002.JPEG,970\n"
    "val/ILSVRC2012_val_00000003.JPEG,230\n",
    "image_sizes.txt": "val/ILSVRC2012_val_00000001.JPEG,500,375\nval/ILSVRC2012_val_00000002.JPEG,500,375\n"
    "val/ILSVRC2012_val_00000003.JPEG,500,375\n",
    "localization.txt": "val/ILSVRC2012_val_00000001.JPEG,111,108,441,193\n"
    "val/ILSVRC2012_val_00000002.JPEG,45,49,499,162\n"
    "val/ILSVRC2012_val_00000002.JPEG,2,69,437,207\n"
    "val/ILSVRC2012_val_00000003.JPEG,38,19,385,373\n",
}

OPENIMAGES_VAL = {
    "image_ids.txt": "val/01226z/32fdab44f6e415f1.jpg\nval/01226z/3dda685b28b1c1d8.jpg\n",
    "class_labels.txt": "val/01226z/32fdab44f6e415f1.jpg,0\nval/01226z/3dda685b28b1c1d8.jpg,0\n",
    "image_sizes.txt": "",  # OpenImages ships it empty
    "localization.txt": "val/01226z/32fdab44f6e415f1.jpg,val/01226z/32fdab44f6e415f1_m01226z_7dab3053.png,"
    "val/01226z/32fdab44f6e415f1_ignore.png\n"
    "val/01226z/3dda685b28b1c1d8.jpg,val/01226z/3dda685b28b1c1d8_m01226z_a3c3a490.png,"
    "val/01226z/3dda685b28b1c1d8_ignore.png\n"
    "val/01226z/3dda685b28b1c1d8.jpg,val/01226z/3dda685b28b1c1d8_m01226z_cde75368.png,\n",
}

OPENIMAGES_TRAIN = {  # training splits carry labels only: empty sizes and localization
    "image_ids.txt": "train/01226z/0a3b6b2a2b6a2b6b.jpg\n",
    "class_labels.txt": "train/01226z/0a3b6b2a2b6a2b6b.jpg,0\n",
    "image_sizes.txt": "",
    "localization.txt": "",
}


def make_split(root: Path, files: dict[str, str | bytes], *, touch: bool = True) -> tuple[Path, Path, Path]:
    """Write a split's metadata under root/metadata/split and (touch) every image / mask it names."""
    mdir = root / "metadata" / "split"
    mdir.mkdir(parents=True, exist_ok=True)
    images, masks = root / "images", root / "masks"
    images.mkdir(exist_ok=True)
    masks.mkdir(exist_ok=True)
    for name, text in files.items():
        data = text.encode() if isinstance(text, str) else text
        (mdir / name).write_bytes(data)
    if touch:
        for line in files["image_ids.txt"].splitlines() if isinstance(files["image_ids.txt"], str) else []:
            if line and ".." not in line and not line.startswith("/"):
                p = images / line
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(b"")
        loc = files.get("localization.txt", "")
        if isinstance(loc, str):
            for line in loc.splitlines():
                parts = line.split(",")
                if len(parts) == 3:
                    for rel in parts[1:]:
                        if rel and ".." not in rel and not rel.startswith("/"):
                            (masks / rel).parent.mkdir(parents=True, exist_ok=True)
                            (masks / rel).write_bytes(b"")
    return mdir, images, masks


# ---------------------------------------------------------------------------------------------------- valid


def test_cub_shape_loads(tmp_path: Path) -> None:
    mdir, images, _ = make_split(tmp_path, CUB_VAL)
    meta = load_metadata(mdir, images)
    assert isinstance(meta, WSOLMetadata)
    assert meta.image_ids[0] == "001.Black_footed_Albatross/30107316117.jpg"
    assert meta.sizes["001.Black_footed_Albatross/30107316117.jpg"] == (560, 419)
    assert meta.boxes["001.Black_footed_Albatross/30107316117.jpg"] == [(176, 136, 459, 291)]
    assert meta.boxes["001.Black_footed_Albatross/44272303765.jpg"] == [(437, 42, 834, 422)]  # no final newline
    assert meta.num_classes == 1 and meta.class_names is None
    assert not meta.masks and meta.has_boxes and not meta.has_masks
    with pytest.raises(AttributeError):
        meta.num_classes = 5  # type: ignore[misc]  # frozen


def test_ilsvrc_shape_multiple_boxes(tmp_path: Path) -> None:
    mdir, images, _ = make_split(tmp_path, ILSVRC_TEST)
    meta = load_metadata(mdir, images, num_classes=1000)
    assert meta.boxes["val/ILSVRC2012_val_00000002.JPEG"] == [(45, 49, 499, 162), (2, 69, 437, 207)]
    assert meta.labels["val/ILSVRC2012_val_00000002.JPEG"] == 970
    assert meta.num_classes == 1000
    # without a class list, the count is max(label) + 1
    assert load_metadata(mdir, images).num_classes == 971


def test_openimages_shape_masks_and_empty_sizes(tmp_path: Path) -> None:
    mdir, images, masks = make_split(tmp_path, OPENIMAGES_VAL)
    meta = load_metadata(mdir, images, masks)
    two = "val/01226z/3dda685b28b1c1d8.jpg"
    assert meta.sizes == {}
    assert meta.boxes == {}
    assert meta.masks[two] == [
        "val/01226z/3dda685b28b1c1d8_m01226z_a3c3a490.png",
        "val/01226z/3dda685b28b1c1d8_m01226z_cde75368.png",
    ]
    assert meta.ignore[two] == "val/01226z/3dda685b28b1c1d8_ignore.png"
    assert meta.ignore_path(two) == masks / "val/01226z/3dda685b28b1c1d8_ignore.png"
    assert [p.name for p in meta.mask_paths(two)] == [
        "3dda685b28b1c1d8_m01226z_a3c3a490.png",
        "3dda685b28b1c1d8_m01226z_cde75368.png",
    ]


def test_openimages_train_shape_has_no_localization(tmp_path: Path) -> None:
    mdir, images, _ = make_split(tmp_path, OPENIMAGES_TRAIN)
    meta = load_metadata(mdir, images)
    assert len(meta) == 1 and not meta.has_localization


def test_class_names_from_parent_folder_bound_labels(tmp_path: Path) -> None:
    mdir, images, _ = make_split(tmp_path, ILSVRC_TEST)
    (mdir.parent / "class_names.txt").write_text("".join(f"c{i}\n" for i in range(1000)))
    meta = load_metadata(mdir, images)
    assert meta.num_classes == 1000 and meta.class_names is not None and meta.class_names[970] == "c970"


def test_open_dataset_layout(tmp_path: Path) -> None:
    make_split(tmp_path, CUB_VAL)
    meta = open_dataset(tmp_path, "split")
    assert meta.image_root == tmp_path / "images" and len(meta) == 3
    with pytest.raises(MetadataError) as e:
        open_dataset(tmp_path, "nope")
    assert "split" in str(e.value)


def test_check_files_false_skips_existence(tmp_path: Path) -> None:
    mdir, images, _ = make_split(tmp_path, CUB_VAL, touch=False)
    with pytest.raises(MetadataError):
        load_metadata(mdir, images)
    assert len(load_metadata(mdir, images, check_files=False)) == 3


# ---------------------------------------------------------------------------------------------------- invalid


def _mutate(base: dict[str, str], name: str, text: str) -> dict[str, str]:
    out = dict(base)
    out[name] = text
    return out


CUB_IDS = CUB_VAL["image_ids.txt"].splitlines()
A, B, C = CUB_IDS

BAD_CASES: list[tuple[str, dict[str, str], str, int | None, str]] = [
    # (case, files, file that must be named, line, substring of the problem)
    (
        "crlf",
        _mutate(CUB_VAL, "class_labels.txt", CUB_VAL["class_labels.txt"].replace("\n", "\r\n")),
        "class_labels.txt",
        1,
        "CR",
    ),
    (
        "crlf-late",
        _mutate(CUB_VAL, "image_sizes.txt", f"{A},560,419\n{B},576,432\r\n{C},999,587\n"),
        "image_sizes.txt",
        2,
        "CRLF",
    ),
    ("dotdot", _mutate(CUB_VAL, "image_ids.txt", f"{A}\n../escape.jpg\n{C}\n"), "image_ids.txt", 2, ".."),
    ("absolute", _mutate(CUB_VAL, "image_ids.txt", f"{A}\n{B}\n/etc/passwd\n"), "image_ids.txt", 3, "absolute"),
    ("backslash", _mutate(CUB_VAL, "image_ids.txt", f"{A}\n{B}\n001\\x.jpg\n"), "image_ids.txt", 3, "backslash"),
    ("duplicate-id", _mutate(CUB_VAL, "image_ids.txt", f"{A}\n{B}\n{A}\n"), "image_ids.txt", 3, "duplicate"),
    ("comma-in-id", _mutate(CUB_VAL, "image_ids.txt", f"{A}\n{B}\n{C},x\n"), "image_ids.txt", 3, "comma"),
    ("blank-line", _mutate(CUB_VAL, "image_ids.txt", f"{A}\n\n{B}\n{C}\n"), "image_ids.txt", 2, "empty line"),
    (
        "label-not-int",
        _mutate(CUB_VAL, "class_labels.txt", f"{A},0\n{B},zero\n{C},0\n"),
        "class_labels.txt",
        2,
        "not an integer",
    ),
    (
        "label-float",
        _mutate(CUB_VAL, "class_labels.txt", f"{A},0\n{B},0\n{C},1.0\n"),
        "class_labels.txt",
        3,
        "not an integer",
    ),
    (
        "label-negative",
        _mutate(CUB_VAL, "class_labels.txt", f"{A},-1\n{B},0\n{C},0\n"),
        "class_labels.txt",
        1,
        "out of range",
    ),
    (
        "label-dup",
        _mutate(CUB_VAL, "class_labels.txt", f"{A},0\n{B},0\n{B},0\n{C},0\n"),
        "class_labels.txt",
        3,
        "duplicate",
    ),
    (
        "label-unknown-id",
        _mutate(CUB_VAL, "class_labels.txt", f"{A},0\n{B},0\n{C},0\nother.jpg,0\n"),
        "class_labels.txt",
        4,
        "not in image_ids.txt",
    ),
    ("label-missing", _mutate(CUB_VAL, "class_labels.txt", f"{A},0\n{C},0\n"), "class_labels.txt", None, "no label"),
    (
        "label-malformed",
        _mutate(CUB_VAL, "class_labels.txt", f"{A},0\n{B} 0\n{C},0\n"),
        "class_labels.txt",
        2,
        "expected 2",
    ),
    (
        "size-missing",
        _mutate(CUB_VAL, "image_sizes.txt", f"{A},560,419\n{C},999,587\n"),
        "image_sizes.txt",
        None,
        "no size",
    ),
    (
        "size-zero",
        _mutate(CUB_VAL, "image_sizes.txt", f"{A},560,419\n{B},0,432\n{C},999,587\n"),
        "image_sizes.txt",
        2,
        "not positive",
    ),
    (
        "size-malformed",
        _mutate(CUB_VAL, "image_sizes.txt", f"{A},560,419\n{B},576\n{C},999,587\n"),
        "image_sizes.txt",
        2,
        "expected 3",
    ),
    (
        "box-outside-x",
        _mutate(CUB_VAL, "localization.txt", f"{A},176,136,560,291\n{B},44,183,426,254\n{C},437,42,834,422\n"),
        "localization.txt",
        1,
        "outside",
    ),
    (
        "box-outside-y",
        _mutate(CUB_VAL, "localization.txt", f"{A},176,136,459,291\n{B},44,183,426,432\n{C},437,42,834,422\n"),
        "localization.txt",
        2,
        "outside",
    ),
    (
        "box-x0-gt-x1",
        _mutate(CUB_VAL, "localization.txt", f"{A},176,136,459,291\n{B},44,183,426,254\n{C},834,42,437,422\n"),
        "localization.txt",
        3,
        "x0 > x1",
    ),
    (
        "box-negative",
        _mutate(CUB_VAL, "localization.txt", f"{A},-1,136,459,291\n{B},44,183,426,254\n{C},437,42,834,422\n"),
        "localization.txt",
        1,
        "negative",
    ),
    (
        "box-not-int",
        _mutate(CUB_VAL, "localization.txt", f"{A},176,136,459,291\n{B},44,183.5,426,254\n{C},437,42,834,422\n"),
        "localization.txt",
        2,
        "not an integer",
    ),
    (
        "box-4-fields",
        _mutate(CUB_VAL, "localization.txt", f"{A},176,136,459,291\n{B},44,183,426\n{C},437,42,834,422\n"),
        "localization.txt",
        2,
        "expected 5",
    ),
    (
        "box-unknown-id",
        _mutate(
            CUB_VAL,
            "localization.txt",
            f"{A},176,136,459,291\n{B},44,183,426,254\n{C},437,42,834,422\nzzz.jpg,1,1,2,2\n",
        ),
        "localization.txt",
        4,
        "not in",
    ),
    (
        "box-missing",
        _mutate(CUB_VAL, "localization.txt", f"{A},176,136,459,291\n{C},437,42,834,422\n"),
        "localization.txt",
        None,
        "no box",
    ),
    (
        "box-then-mask",
        _mutate(CUB_VAL, "localization.txt", f"{A},176,136,459,291\n{B},m.png,\n{C},437,42,834,422\n"),
        "localization.txt",
        2,
        "mask line",
    ),
    (
        "bom",
        _mutate(CUB_VAL, "image_ids.txt", "\ufeff" + CUB_VAL["image_ids.txt"]),
        "image_ids.txt",
        1,
        "byte-order mark",
    ),
]


@pytest.mark.parametrize("case,files,fname,line,problem", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_metadata(
    tmp_path: Path, case: str, files: dict[str, str], fname: str, line: int | None, problem: str
) -> None:
    mdir, images, _ = make_split(tmp_path, files)
    with pytest.raises(MetadataError) as e:
        load_metadata(mdir, images)
    err = e.value
    assert err.path.name == fname, str(err)
    assert err.line == line, str(err)
    assert problem in err.problem, str(err)
    assert err.fix, "every metadata error proposes a fix"
    assert f"{fname}:{line}" in str(err) if line is not None else fname in str(err)


def test_missing_image_names_its_line(tmp_path: Path) -> None:
    mdir, images, _ = make_split(tmp_path, CUB_VAL)
    (images / B).unlink()
    with pytest.raises(MetadataError) as e:
        load_metadata(mdir, images)
    assert e.value.path.name == "image_ids.txt" and e.value.line == 2 and "not found" in e.value.problem


def test_symlink_escaping_root(tmp_path: Path) -> None:
    mdir, images, _ = make_split(tmp_path, CUB_VAL)
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(b"")
    (images / C).unlink()
    os.symlink(outside, images / C)
    with pytest.raises(MetadataError) as e:
        load_metadata(mdir, images)
    assert e.value.line == 3 and "outside the root" in e.value.problem


def test_missing_metadata_file(tmp_path: Path) -> None:
    files = dict(CUB_VAL)
    del files["image_sizes.txt"]
    mdir, images, _ = make_split(tmp_path, files)
    with pytest.raises(MetadataError) as e:
        load_metadata(mdir, images)
    assert e.value.path.name == "image_sizes.txt" and e.value.line is None


def test_label_out_of_range_of_class_names(tmp_path: Path) -> None:
    files = _mutate(CUB_VAL, "class_labels.txt", f"{A},0\n{B},1\n{C},2\n")
    mdir, images, _ = make_split(tmp_path, files)
    (mdir / "class_names.txt").write_text("albatross\ngull\n")
    with pytest.raises(MetadataError) as e:
        load_metadata(mdir, images)
    assert e.value.path.name == "class_labels.txt" and e.value.line == 3 and "out of range [0, 2)" in e.value.problem
    with pytest.raises(MetadataError) as e2:
        load_metadata(mdir, images, num_classes=3)  # disagrees with the 2 names
    assert e2.value.path.name == "class_names.txt"


def test_boxes_need_sizes(tmp_path: Path) -> None:
    mdir, images, _ = make_split(tmp_path, _mutate(CUB_VAL, "image_sizes.txt", ""))
    with pytest.raises(MetadataError) as e:
        load_metadata(mdir, images)
    assert e.value.path.name == "image_sizes.txt"


MASK_BAD: list[tuple[str, str, int | None, str]] = [
    (
        "ignore-on-later-line",
        "val/a.jpg,val/a_m0.png,val/a_ignore.png\nval/a.jpg,val/a_m1.png,val/a_ignore.png\nval/b.jpg,val/b_m0.png,\n",
        2,
        "only the image's first line",
    ),
    ("mask-dotdot", "val/a.jpg,../x.png,\nval/b.jpg,val/b_m0.png,\n", 1, ".."),
    ("ignore-absolute", "val/a.jpg,val/a_m0.png,/tmp/ign.png\nval/b.jpg,val/b_m0.png,\n", 1, "absolute"),
    ("mask-2-fields-first", "val/a.jpg,val/a_m0.png\nval/b.jpg,val/b_m0.png,\n", 1, "got 2"),
    ("mask-2-fields", "val/a.jpg,val/a_m0.png,\nval/b.jpg,val/b_m0.png\n", 2, "expected 3"),
    ("mask-duplicate", "val/a.jpg,val/a_m0.png,\nval/a.jpg,val/a_m0.png,\nval/b.jpg,val/b_m0.png,\n", 2, "duplicate"),
    ("mask-then-box", "val/a.jpg,val/a_m0.png,\nval/b.jpg,1,2,3,4\n", 2, "box line"),
    ("mask-missing-image", "val/a.jpg,val/a_m0.png,\n", None, "no mask"),
]


@pytest.mark.parametrize("case,loc,line,problem", MASK_BAD, ids=[c[0] for c in MASK_BAD])
def test_bad_mask_lines(tmp_path: Path, case: str, loc: str, line: int | None, problem: str) -> None:
    files = {
        "image_ids.txt": "val/a.jpg\nval/b.jpg\n",
        "class_labels.txt": "val/a.jpg,0\nval/b.jpg,1\n",
        "image_sizes.txt": "",
        "localization.txt": loc,
    }
    mdir, images, masks = make_split(tmp_path, files)
    with pytest.raises(MetadataError) as e:
        load_metadata(mdir, images, masks)
    assert e.value.path.name == "localization.txt", str(e.value)
    assert e.value.line == line, str(e.value)
    assert problem in e.value.problem, str(e.value)


def test_missing_mask_file(tmp_path: Path) -> None:
    files = dict(OPENIMAGES_VAL)
    mdir, images, masks = make_split(tmp_path, files)
    (masks / "val/01226z/3dda685b28b1c1d8_m01226z_cde75368.png").unlink()
    with pytest.raises(MetadataError) as e:
        load_metadata(mdir, images, masks)
    assert e.value.path.name == "localization.txt" and e.value.line == 3 and "mask not found" in e.value.problem
    # without a mask root the files are not checked
    assert load_metadata(mdir, images).masks


def test_part_masks_reader(tmp_path: Path) -> None:
    mdir = tmp_path / "metadata" / "s"
    mdir.mkdir(parents=True)
    (mdir / "part_masks.txt").write_text("s/0.png,s/0_head.png\n")
    assert load_part_masks(tmp_path, "s") == {"s/0.png": tmp_path / "parts" / "s/0_head.png"}
    (mdir / "part_masks.txt").write_text("s/0.png,s/0_head.png\ns/0.png,s/1_head.png\n")
    with pytest.raises(MetadataError) as e:
        load_part_masks(tmp_path, "s")
    assert e.value.line == 2
