"""Transforms (docs/method.md §2.6) and WSOLDataset, checked against independent PIL/NumPy computations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, DistributedSampler

from fcam_deploy.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    WSOLDataset,
    eval_transform,
    load_metadata,
    sample_crop_flip,
    train_transform,
)
from fcam_deploy.errors import ConfigError, InputError

MEAN = np.array(IMAGENET_MEAN, np.float64)[:, None, None]
STD = np.array(IMAGENET_STD, np.float64)[:, None, None]


def _image(w: int = 50, h: int = 40, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def _chw(im: Image.Image) -> np.ndarray:
    return np.asarray(im, dtype=np.float64).transpose(2, 0, 1)


def test_eval_is_plain_resize() -> None:
    img = _image(50, 40)
    image, raw = eval_transform(img, 32)
    ref = _chw(img.resize((32, 32), Image.BILINEAR))  # oracle: PIL bilinear resize, aspect not kept
    assert raw.dtype == torch.float32 and raw.shape == (3, 32, 32)
    np.testing.assert_array_equal(raw.numpy(), ref)
    np.testing.assert_allclose(image.numpy(), (ref / 255.0 - MEAN) / STD, rtol=0, atol=1e-5)


@pytest.mark.parametrize("seed", range(6))
def test_train_matches_pil_crop_flip(seed: int) -> None:
    img = _image(47, 61, seed)
    size, resize = 24, 30
    geom = sample_crop_flip(size, resize, torch.Generator().manual_seed(seed))
    image, raw = train_transform(img, size, resize, torch.Generator().manual_seed(seed))
    ref_im = img.resize((resize, resize), Image.BILINEAR).crop((geom.left, geom.top, geom.left + size, geom.top + size))
    if geom.flip:
        ref_im = ref_im.transpose(Image.FLIP_LEFT_RIGHT)
    ref = _chw(ref_im)
    np.testing.assert_array_equal(raw.numpy(), ref)
    np.testing.assert_allclose(image.numpy(), (ref / 255.0 - MEAN) / STD, rtol=0, atol=1e-5)


def test_marker_lands_at_same_place_in_raw_and_image() -> None:
    size, resize = 16, 24
    arr = np.zeros((resize, resize, 3), np.uint8)
    arr[5, 3] = (255, 255, 255)  # a marker, at the resize resolution so the resize is the identity
    img = Image.fromarray(arr)
    seen_flip = {False: 0, True: 0}
    for seed in range(40):
        geom = sample_crop_flip(size, resize, torch.Generator().manual_seed(seed))
        image, raw = train_transform(img, size, resize, torch.Generator().manual_seed(seed))
        y, x = 5 - geom.top, 3 - geom.left
        inside = 0 <= y < size and 0 <= x < size
        if geom.flip:
            x = size - 1 - x
        assert (raw[0] > 0).sum().item() == (1 if inside else 0)
        if inside:
            seen_flip[geom.flip] += 1
            assert raw[:, y, x].tolist() == [255.0, 255.0, 255.0]
            flat = int(torch.argmax(image[1]).item())
            assert divmod(flat, size) == (y, x)
    assert seen_flip[False] and seen_flip[True]


def test_crop_and_flip_distribution() -> None:
    g = torch.Generator().manual_seed(0)
    draws = [sample_crop_flip(8, 12, g) for _ in range(2000)]
    assert {d.top for d in draws} == set(range(5)) and {d.left for d in draws} == set(range(5))
    assert 0.45 < np.mean([d.flip for d in draws]) < 0.55


def test_generator_reproducibility() -> None:
    img = _image()
    a = train_transform(img, 20, 28, torch.Generator().manual_seed(7))[1]
    b = train_transform(img, 20, 28, torch.Generator().manual_seed(7))[1]
    c = [train_transform(img, 20, 28, torch.Generator().manual_seed(s))[1] for s in range(8)]
    assert torch.equal(a, b)
    assert any(not torch.equal(a, x) for x in c)


def test_resize_equal_size_is_deterministic_geometry() -> None:
    img = _image()
    _, raw = train_transform(img, 20, 20, torch.Generator().manual_seed(1))
    ref = _chw(img.resize((20, 20), Image.BILINEAR))
    assert np.array_equal(raw.numpy(), ref) or np.array_equal(raw.numpy(), ref[:, :, ::-1])


def test_bad_sizes() -> None:
    with pytest.raises(ConfigError):
        train_transform(_image(), 32, 16, torch.Generator())
    with pytest.raises(InputError):
        eval_transform(_image().convert("L"), 16)


# ------------------------------------------------------------------------------------------------ dataset


@pytest.fixture()
def tiny_split(tmp_path: Path):
    images = tmp_path / "images"
    (images / "s").mkdir(parents=True)
    ids = []
    for i in range(6):
        im = _image(30 + i, 20 + 2 * i, seed=i)
        if i == 2:
            im = im.convert("L")  # a grayscale file among RGB ones
        im.save(images / "s" / f"{i}.png")
        ids.append(f"s/{i}.png")
    mdir = tmp_path / "metadata" / "s"
    mdir.mkdir(parents=True)
    (mdir / "image_ids.txt").write_text("".join(f"{k}\n" for k in ids))
    (mdir / "class_labels.txt").write_text("".join(f"{k},{i % 3}\n" for i, k in enumerate(ids)))
    (mdir / "image_sizes.txt").write_text("".join(f"{k},{30 + i},{20 + 2 * i}\n" for i, k in enumerate(ids)))
    (mdir / "localization.txt").write_text("".join(f"{k},0,0,5,5\n" for k in ids))
    return load_metadata(mdir, images)


def test_dataset_items(tiny_split) -> None:
    ds = WSOLDataset(tiny_split, None, train=True, size=16, resize=20)
    item = ds[3]
    assert set(item) == {"image", "raw", "label", "image_id"}
    assert item["image"].shape == (3, 16, 16) and item["image"].dtype == torch.float32
    assert item["raw"].shape == (3, 16, 16) and item["raw"].dtype == torch.float32
    assert 0 <= item["raw"].min() and item["raw"].max() <= 255
    assert item["label"].dtype == torch.int64 and int(item["label"]) == 0
    assert item["image_id"] == "s/3.png"
    # normalised image and raw describe the same pixels
    back = (item["image"].double() * torch.tensor(STD) + torch.tensor(MEAN)) * 255.0
    assert torch.allclose(back, item["raw"].double(), atol=1e-3)
    gray = ds[2]["raw"]
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])
    ev = WSOLDataset(tiny_split, None, train=False, size=16)
    ref = _chw(Image.open(tiny_split.image_root / "s/3.png").convert("RGB").resize((16, 16), Image.BILINEAR))
    np.testing.assert_array_equal(ev[3]["raw"].numpy(), ref)


def test_dataset_seeding_order_and_epochs(tiny_split) -> None:
    ds = WSOLDataset(tiny_split, None, train=True, size=16, resize=24, seed=5)
    forward = [ds[i]["raw"] for i in range(len(ds))]
    backward = [ds[i]["raw"] for i in reversed(range(len(ds)))][::-1]
    assert all(torch.equal(a, b) for a, b in zip(forward, backward))  # independent of access order
    ds.set_epoch(1)
    epoch1 = [ds[i]["raw"] for i in range(len(ds))]
    assert any(not torch.equal(a, b) for a, b in zip(forward, epoch1))
    other = WSOLDataset(tiny_split, None, train=True, size=16, resize=24, seed=6)
    assert any(not torch.equal(a, other[i]["raw"]) for i, a in enumerate(forward))
    cached = WSOLDataset(tiny_split, None, train=True, size=16, resize=24, seed=5, cache=True)
    assert all(torch.equal(forward[i], cached[i]["raw"]) for i in range(len(ds)))
    assert all(torch.equal(forward[i], cached[i]["raw"]) for i in range(len(ds)))  # from the cache


def test_dataset_with_distributed_sampler(tiny_split) -> None:
    ds = WSOLDataset(tiny_split, None, train=True, size=16, resize=20, seed=1)
    seen: dict[str, torch.Tensor] = {}
    for rank in range(2):
        sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=3)
        sampler.set_epoch(0)
        loader = DataLoader(ds, batch_size=2, sampler=sampler)
        for batch in loader:
            assert batch["image"].shape[1:] == (3, 16, 16)
            for k, img_id in enumerate(batch["image_id"]):
                assert img_id not in seen  # ranks get disjoint images
                seen[img_id] = batch["raw"][k]
    assert set(seen) == set(tiny_split.image_ids)
    for i, img_id in enumerate(tiny_split.image_ids):  # the same items as direct access: rank-independent
        assert torch.equal(seen[img_id], ds[i]["raw"])


def test_dataset_bad_args(tiny_split) -> None:
    with pytest.raises(ConfigError):
        WSOLDataset(tiny_split, None, train=True, size=32, resize=16)
    with pytest.raises(ConfigError):
        WSOLDataset(tiny_split, None, mean=(0.5, 0.5), std=(1, 1, 1))
