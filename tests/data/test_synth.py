"""Synthetic WSOL set: determinism, format (reads back through our own reader), ground-truth consistency,
the body/head design, and the `fcam data synth` CLI."""

from __future__ import annotations

import colorsys
import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from fcam_deploy import cli
from fcam_deploy.data import (
    PATTERNS,
    SynthConfig,
    generate_synthetic,
    load_image_rgb,
    load_mask,
    load_part_masks,
    open_dataset,
    render_sample,
)
from fcam_deploy.errors import ConfigError

COUNTS = {"train": 40, "val": 8, "test": 16}
CFG = SynthConfig(size=64, num_classes=4)


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def synth_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "set"
    generate_synthetic(root, CFG, COUNTS, seed=3)
    return root


def test_deterministic_bytes(synth_set: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    generate_synthetic(again, CFG, COUNTS, seed=3)
    assert _digest(again) == _digest(synth_set)
    other = tmp_path / "other"
    generate_synthetic(other, CFG, COUNTS, seed=4)
    a, b = _digest(synth_set), _digest(other)
    images = [k for k in a if k.startswith("images/")]
    assert sum(a[k] != b.get(k) for k in images) == len(images)  # every image differs with another seed


def test_parallel_workers_write_identical_files(synth_set: Path, tmp_path: Path) -> None:
    par = tmp_path / "par"
    generate_synthetic(par, CFG, COUNTS, seed=3, workers=2)
    assert _digest(par) == _digest(synth_set)
    with pytest.raises(ConfigError):
        generate_synthetic(tmp_path / "w0", CFG, COUNTS, workers=0)


def test_split_prefix_is_independent_of_split_size(synth_set: Path, tmp_path: Path) -> None:
    small = tmp_path / "small"
    generate_synthetic(small, CFG, {"train": 5}, seed=3)
    # per-image randomness depends on (seed, split, index) only: same label -> same image
    lab_small = dict(line.split(",") for line in (small / "metadata/train/class_labels.txt").read_text().split())
    lab_big = dict(line.split(",") for line in (synth_set / "metadata/train/class_labels.txt").read_text().split())
    same = [k for k in lab_small if lab_small[k] == lab_big[k]]
    assert same
    for k in same:
        assert (small / "images" / k).read_bytes() == (synth_set / "images" / k).read_bytes()


def test_reads_back_with_consistent_ground_truth(synth_set: Path) -> None:
    names = (synth_set / "metadata" / "class_names.txt").read_text().split()
    assert names == list(PATTERNS[:4])
    two_instances = 0
    for split, n in COUNTS.items():
        meta = open_dataset(synth_set, split)
        assert len(meta) == n and meta.num_classes == 4 and meta.class_names == names
        assert meta.has_boxes and meta.has_masks
        parts = load_part_masks(synth_set, split)
        for image_id in meta.image_ids:
            img = load_image_rgb(meta.image_path(image_id))
            assert img.size == meta.sizes[image_id] == (64, 64)
            boxes = meta.boxes[image_id]
            masks = [load_mask(p) > 127 for p in meta.mask_paths(image_id)]
            assert len(boxes) == len(masks) >= 1 and meta.ignore[image_id] is None
            two_instances += len(boxes) == 2
            for (x0, y0, x1, y1), m in zip(boxes, masks):
                assert 0 <= x0 <= x1 <= 63 and 0 <= y0 <= y1 <= 63
                ys, xs = np.nonzero(m)
                assert (xs.min(), ys.min(), xs.max(), ys.max()) == (x0, y0, x1, y1)  # GT box = mask bbox
            if len(masks) == 2:
                assert not np.any(masks[0] & masks[1])  # instances do not overlap
            union = np.any(masks, axis=0)
            head = load_mask(parts[image_id]) > 127
            assert head.any() and not np.any(head & ~union)  # the head is part of the object
            frac = head.sum() / union.sum()
            assert 0.1 < frac < 0.3, frac  # discriminative part is a small fraction of the object
            area = union.mean()
            assert 0.15 < area < 0.45, area  # objects are large (feasibility study: ~30 %)
    assert two_instances >= 1


def test_classes_balanced(synth_set: Path) -> None:
    for split in COUNTS:
        meta = open_dataset(synth_set, split)
        counts = Counter(meta.labels.values())
        assert set(counts) == set(range(4))
        assert max(counts.values()) - min(counts.values()) <= 1


def test_config_record(synth_set: Path) -> None:
    info = json.loads((synth_set / "metadata" / "synth_config.json").read_text())
    assert info["seed"] == 3 and info["counts"] == COUNTS
    assert SynthConfig.from_json_dict(info["config"]) == CFG


def _saturation(rgb: np.ndarray) -> np.ndarray:
    return np.array([colorsys.rgb_to_hsv(*(c / 255.0))[1] for c in rgb.reshape(-1, 3)])


def test_design_properties() -> None:
    """Body colour is class-independent; only the head pattern differs; backgrounds stay out of the body's colour
    range; two-instance images have two disjoint masks."""
    rng_seed = np.random.SeedSequence(11)
    near, total = 0, 0
    for i, child in enumerate(rng_seed.spawn(24)):
        s = render_sample(SynthConfig(size=64), i % 8, np.random.default_rng(child))
        obj = np.any(s.instance_masks, axis=0)
        body = obj & ~s.head_mask
        body_col = np.median(s.image[body].astype(np.float64), axis=0)
        dist = np.linalg.norm(s.image.astype(np.float64) - body_col, axis=2)
        near += int(((dist < 30) & ~obj).sum())
        total += int((~obj).sum())
        # the head shares the body colour: most head pixels are near the body colour (pattern pixels are dark)
        head_near = (dist[s.head_mask] < 45).mean()
        assert head_near > 0.3
        # the class pattern is dark: a part of the head is far darker than the body, which has no such pixels
        lum = s.image.astype(np.float64).mean(axis=2)
        dark = lum < 0.5 * np.median(lum[body])
        assert dark[s.head_mask].mean() > 0.05
        assert dark[body].mean() < 0.02
    assert near / total < 0.01  # background + distractors almost never take the body's colour
    two = render_sample(SynthConfig(size=96, two_instance_prob=1.0), 1, np.random.default_rng(5))
    assert len(two.boxes) == 2 and not np.any(two.instance_masks[0] & two.instance_masks[1])


def test_same_rng_same_sample_different_label_different_head() -> None:
    a = render_sample(CFG, 0, np.random.default_rng(1))
    b = render_sample(CFG, 0, np.random.default_rng(1))
    c = render_sample(CFG, 3, np.random.default_rng(1))
    assert np.array_equal(a.image, b.image)
    # same geometry and colours, different class: only head pixels change
    assert a.boxes == c.boxes
    diff = np.any(a.image != c.image, axis=2)
    assert diff.any() and not np.any(diff & ~a.head_mask)


@pytest.mark.parametrize(
    "bad",
    [
        {"num_classes": 0},
        {"num_classes": len(PATTERNS) + 1},
        {"size": 8},
        {"object_area": (0.4, 0.2)},
        {"head_fraction": 0.9},
        {"two_instance_prob": 1.5},
        {"image_format": "bmp"},
        {"noise_sigma": -1.0},
    ],
)
def test_config_validation(bad: dict) -> None:
    with pytest.raises(ConfigError):
        SynthConfig(**bad)


def test_generate_rejects_bad_counts_and_existing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        generate_synthetic(tmp_path / "a", CFG, {"training": 3})
    with pytest.raises(ConfigError):
        generate_synthetic(tmp_path / "a", CFG, {"train": -1})
    generate_synthetic(tmp_path / "b", CFG, {"train": 2})
    with pytest.raises(ConfigError, match="already holds"):
        generate_synthetic(tmp_path / "b", CFG, {"train": 2})
    generate_synthetic(tmp_path / "b", CFG, {"test": 3}, overwrite=True)
    assert not (tmp_path / "b" / "images" / "train").exists()
    assert len(open_dataset(tmp_path / "b", "test")) == 3


def test_jpeg_format(tmp_path: Path) -> None:
    generate_synthetic(tmp_path / "j", SynthConfig(size=48, num_classes=2, image_format="jpg"), {"val": 4}, seed=1)
    meta = open_dataset(tmp_path / "j", "val")
    assert all(k.endswith(".jpg") for k in meta.image_ids)
    assert load_image_rgb(meta.image_path(meta.image_ids[0])).size == (48, 48)


def test_cli_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    argv = [
        "data",
        "synth",
        "--out",
        str(out),
        "--classes",
        "3",
        "--train",
        "6",
        "--val",
        "3",
        "--test",
        "3",
        "--size",
        "48",
        "--seed",
        "2",
        "--no-progress",
    ]
    assert cli.main(argv) == 0
    assert "wrote" in capsys.readouterr().out
    for split, n in (("train", 6), ("val", 3), ("test", 3)):
        meta = open_dataset(out, split)
        assert len(meta) == n and meta.num_classes == 3
    # the CLI and the API write the same bytes
    generate_synthetic(tmp_path / "api", SynthConfig(size=48, num_classes=3), {"train": 6, "val": 3, "test": 3}, seed=2)
    assert _digest(out) == _digest(tmp_path / "api")
    # an existing set is a typed error -> exit code 2; --overwrite replaces it
    assert cli.main(argv) == 2
    assert "already holds a dataset" in capsys.readouterr().err
    assert cli.main([*argv, "--overwrite"]) == 0
    assert cli.main(["data", "synth", "--out", str(tmp_path / "x"), "--classes", "11"]) == 2


def test_cli_config_file_and_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg_path = tmp_path / "design.json"
    cfg_path.write_text(json.dumps({"num_classes": 2, "size": 40, "two_instance_prob": 1.0, "noise_sigma": 0.0}))
    out = tmp_path / "d"
    assert (
        cli.main(
            [
                "data",
                "synth",
                "--out",
                str(out),
                "--config",
                str(cfg_path),
                "--train",
                "4",
                "--val",
                "0",
                "--test",
                "2",
                "--no-progress",
            ]
        )
        == 0
    )
    meta = open_dataset(out, "train")
    assert meta.num_classes == 2 and meta.sizes[meta.image_ids[0]] == (40, 40)
    assert all(len(meta.boxes[k]) == 2 for k in meta.image_ids)  # two_instance_prob=1 reached the generator
    # the record written next to the set reproduces it byte for byte
    again = tmp_path / "again"
    assert (
        cli.main(
            [
                "data",
                "synth",
                "--out",
                str(again),
                "--config",
                str(out / "metadata/synth_config.json"),
                "--train",
                "4",
                "--val",
                "0",
                "--test",
                "2",
                "--no-progress",
            ]
        )
        == 0
    )
    assert _digest(again) == _digest(out)
    capsys.readouterr()
    assert cli.main(["data", "check", "--data", str(out), "--decode"]) == 0
    text = capsys.readouterr().out
    assert "train: 4 images, 2 classes, 8 boxes, 8 masks, all decoded: ok" in text
    # a typo in a knob is a typed error naming the known keys
    cfg_path.write_text(json.dumps({"num_clases": 2}))
    assert cli.main(["data", "synth", "--out", str(tmp_path / "e"), "--config", str(cfg_path)]) == 2
    assert "unknown SynthConfig keys ['num_clases']" in capsys.readouterr().err
    # check finds a corrupt image and a wrong size
    (out / "images" / meta.image_ids[1]).write_bytes(b"not an image")
    assert cli.main(["data", "check", "--data", str(out), "--split", "train", "--decode"]) == 2
    assert "not a readable image" in capsys.readouterr().err
    assert cli.main(["data", "check", "--data", str(out), "--split", "train"]) == 0  # metadata alone is fine


def test_pixel_noise_statistics() -> None:
    from fcam_deploy.data.synth import _pixel_noise

    x = _pixel_noise(np.random.default_rng(0), (300, 300, 3), 6.0).astype(np.float64)
    assert x.shape == (300, 300, 3)
    assert abs(x.mean()) < 0.05 and abs(x.std() - 6.0) < 0.05
    # no noise knob -> a noise-free image is exactly the composition (same object, smooth background)
    clean = render_sample(SynthConfig(size=48, noise_sigma=0.0), 0, np.random.default_rng(2))
    noisy = render_sample(SynthConfig(size=48), 0, np.random.default_rng(2))
    d = noisy.image.astype(float) - clean.image.astype(float)
    assert 4.0 < d.std() < 8.0
