"""Safe image/mask loading: every mode, corrupt and truncated files, decompression bombs."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from fcam_deploy.data import DEFAULT_MAX_PIXELS, image_size, load_image_rgb, load_mask
from fcam_deploy.errors import ImageError

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (7, 9, 3), dtype=np.uint8)


def save(tmp_path: Path, name: str, im: Image.Image, **kw: object) -> Path:
    p = tmp_path / name
    im.save(p, **kw)
    return p


def test_rgb_png_exact(tmp_path: Path) -> None:
    out = load_image_rgb(save(tmp_path, "a.png", Image.fromarray(RGB)))
    assert out.mode == "RGB" and out.size == (9, 7)
    np.testing.assert_array_equal(np.asarray(out), RGB)


def test_grayscale_replicated(tmp_path: Path) -> None:
    g = RGB[:, :, 0]
    out = np.asarray(load_image_rgb(save(tmp_path, "g.png", Image.fromarray(g, "L"))))
    np.testing.assert_array_equal(out, np.repeat(g[:, :, None], 3, axis=2))


def test_bilevel(tmp_path: Path) -> None:
    b = RGB[:, :, 0] > 128
    out = np.asarray(load_image_rgb(save(tmp_path, "b.png", Image.fromarray(b))))
    np.testing.assert_array_equal(out, np.repeat(np.where(b, 255, 0)[:, :, None], 3, axis=2).astype(np.uint8))


def test_palette_without_transparency(tmp_path: Path) -> None:
    palette = RNG.integers(0, 256, (256, 3), dtype=np.uint8)
    idx = RNG.integers(0, 256, (7, 9), dtype=np.uint8)
    im = Image.fromarray(idx, "P")
    im.putpalette(palette.tobytes())
    out = np.asarray(load_image_rgb(save(tmp_path, "p.png", im)))
    np.testing.assert_array_equal(out, palette[idx])  # oracle: palette lookup


def test_palette_with_transparency_composited(tmp_path: Path) -> None:
    palette = np.zeros((256, 3), np.uint8)
    palette[1] = (10, 200, 30)
    idx = np.zeros((4, 4), np.uint8)
    idx[1:3, 1:3] = 1
    im = Image.fromarray(idx, "P")
    im.putpalette(palette.tobytes())
    p = save(tmp_path, "pt.png", im, transparency=0)  # index 0 fully transparent
    out = np.asarray(load_image_rgb(p, background=(255, 0, 255)))
    assert tuple(out[0, 0]) == (255, 0, 255)  # transparent -> background
    assert tuple(out[1, 1]) == (10, 200, 30)


@pytest.mark.parametrize("background", [(255, 255, 255), (0, 0, 0), (12, 34, 56)])
def test_rgba_composited_over_background(tmp_path: Path, background: tuple[int, int, int]) -> None:
    alpha = RNG.integers(0, 256, (7, 9), dtype=np.uint8)
    rgba = np.dstack([RGB, alpha])
    out = np.asarray(load_image_rgb(save(tmp_path, "a.png", Image.fromarray(rgba, "RGBA")), background=background))
    a = alpha[:, :, None].astype(np.float64) / 255.0
    expected = RGB * a + np.array(background, np.float64) * (1 - a)  # oracle: "over" operator
    assert np.abs(out.astype(np.float64) - expected).max() <= 1.0


def test_la_composited(tmp_path: Path) -> None:
    la = np.dstack([RGB[:, :, 0], np.zeros((7, 9), np.uint8)])  # fully transparent
    out = np.asarray(load_image_rgb(save(tmp_path, "la.png", Image.fromarray(la, "LA")), background=(1, 2, 3)))
    assert (out == np.array([1, 2, 3], np.uint8)).all()


def test_sixteen_bit_gray_scaled(tmp_path: Path) -> None:
    v = np.array([[0, 1, 128, 129, 257], [32767, 32768, 65279, 65534, 65535]], dtype=np.uint16)
    p = save(tmp_path, "g16.png", Image.fromarray(v))
    assert Image.open(p).mode in ("I;16", "I")  # what PIL reads back for 16-bit gray PNG
    out = np.asarray(load_image_rgb(p))
    expected = np.round(v.astype(np.float64) * 255.0 / 65535.0).astype(np.uint8)  # oracle: proper rescale
    np.testing.assert_array_equal(out[:, :, 0], expected)
    np.testing.assert_array_equal(out[:, :, 1], expected)
    assert out[1, 4, 0] == 255 and out[0, 4, 0] == 1  # full range maps to full range


def test_sixteen_bit_gray_tiff_mode_i16(tmp_path: Path) -> None:
    v = np.array([[0, 65535], [257, 514]], dtype=np.uint16)
    p = save(tmp_path, "g16.tif", Image.fromarray(v))
    assert Image.open(p).mode.startswith("I;16")
    out = np.asarray(load_image_rgb(p))
    np.testing.assert_array_equal(out[:, :, 2], [[0, 255], [1, 2]])


def test_mode_i_out_of_16bit_range_rejected(tmp_path: Path) -> None:
    p = save(tmp_path, "i.tif", Image.fromarray(np.array([[0, 70000]], dtype=np.int32), "I"))
    with pytest.raises(ImageError, match="16-bit range"):
        load_image_rgb(p)


def test_cmyk_converted(tmp_path: Path) -> None:
    cmy = RNG.integers(0, 256, (5, 6, 3), dtype=np.uint8)
    cmyk = np.dstack([cmy, np.zeros((5, 6), np.uint8)])  # K = 0: RGB = 255 - CMY in any CMYK model
    p = save(tmp_path, "c.tif", Image.fromarray(cmyk, "CMYK"))
    out = np.asarray(load_image_rgb(p))
    np.testing.assert_array_equal(out, 255 - cmy)


def test_float_mode_rejected(tmp_path: Path) -> None:
    p = save(tmp_path, "f.tif", Image.fromarray(np.zeros((3, 3), np.float32), "F"))
    with pytest.raises(ImageError, match="unsupported image mode 'F'"):
        load_image_rgb(p)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="not found"):
        load_image_rgb(tmp_path / "nope.png")


def test_corrupt_file(tmp_path: Path) -> None:
    p = tmp_path / "junk.png"
    p.write_bytes(RNG.integers(0, 256, 500, dtype=np.uint8).tobytes())
    with pytest.raises(ImageError, match="not a readable image"):
        load_image_rgb(p)


def test_corrupt_pixel_data(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    start = data.index(b"IDAT") + 4
    for i in range(start + 10, start + 60):
        data[i] ^= 0x5A  # scramble the zlib stream
    p = tmp_path / "bad.png"
    p.write_bytes(bytes(data))
    with pytest.raises(ImageError):
        load_image_rgb(p)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated(tmp_path: Path, fmt: str) -> None:
    buf = io.BytesIO()
    Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, fmt)
    data = buf.getvalue()
    p = tmp_path / f"t.{fmt.lower()}"
    p.write_bytes(data[: len(data) // 2])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    with pytest.raises(ImageError, match="truncated|corrupt"):
        load_image_rgb(p)
    with pytest.raises(ImageError):
        load_mask(p)


def test_refuses_when_truncated_loading_was_enabled_globally(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = save(tmp_path, "a.png", Image.fromarray(RGB))
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(ImageError, match="LOAD_TRUNCATED_IMAGES"):
        load_image_rgb(p)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG signature + IHDR (8-bit RGB) + IEND, with no pixel data at all."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_bomb_refused_before_decoding(tmp_path: Path) -> None:
    # header claims 5000 x 5000 but there is no pixel data: decoding would fail with a different error,
    # so the bomb message proves the check ran on the header alone
    p = tmp_path / "bomb.png"
    p.write_bytes(_png_header_only(5000, 5000))
    before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageError, match="exceeds the limit of 1000000"):
        load_image_rgb(p, max_pixels=1_000_000)
    with pytest.raises(ImageError, match="exceeds the limit"):
        load_mask(p, max_pixels=1_000_000)
    with pytest.raises(ImageError, match="exceeds the limit"):
        image_size(p, max_pixels=1_000_000)
    assert Image.MAX_IMAGE_PIXELS == before  # global untouched
    # under the limit it is decoded, and the missing data is then reported
    with pytest.raises(ImageError, match="cannot decode"):
        load_image_rgb(p, max_pixels=30_000_000)


def test_bomb_limit_is_inclusive_and_real_image(tmp_path: Path) -> None:
    p = save(tmp_path, "a.png", Image.fromarray(RGB))
    assert load_image_rgb(p, max_pixels=63).size == (9, 7)
    with pytest.raises(ImageError, match="63 pixels exceeds the limit of 62"):
        load_image_rgb(p, max_pixels=62)


def test_huge_header_refused_by_default(tmp_path: Path) -> None:
    p = tmp_path / "huge.png"
    p.write_bytes(_png_header_only(100_000, 100_000))  # 1e10 pixels, above PIL's own hard limit too
    with pytest.raises(ImageError, match="bomb"):
        load_image_rgb(p)
    with pytest.raises(ImageError, match="bomb"):
        load_image_rgb(p, max_pixels=10**11)
    assert DEFAULT_MAX_PIXELS == Image.MAX_IMAGE_PIXELS


def test_image_size_header(tmp_path: Path) -> None:
    assert image_size(save(tmp_path, "a.png", Image.fromarray(RGB))) == (9, 7)


# ------------------------------------------------------------------------------------------------ masks


@pytest.mark.parametrize("kind", ["L", "1", "RGB", "RGBA", "P", "LA"])
def test_mask_matches_opencv_grayscale(tmp_path: Path, kind: str) -> None:
    """Oracle: cv2.imread(IMREAD_GRAYSCALE), which the protocol's PxAP reads masks with."""
    import cv2

    base = RNG.integers(0, 256, (11, 13, 4), dtype=np.uint8)
    if kind == "L":
        im = Image.fromarray(base[:, :, 0], "L")
    elif kind == "1":
        im = Image.fromarray(base[:, :, 0] > 100)
    elif kind == "RGB":
        im = Image.fromarray(base[:, :, :3], "RGB")
    elif kind == "RGBA":
        im = Image.fromarray(base, "RGBA")
    elif kind == "LA":
        im = Image.fromarray(base[:, :, :2], "LA")
    else:
        im = Image.fromarray(base[:, :, 0], "P")
        im.putpalette(RNG.integers(0, 256, 768, dtype=np.uint8).tobytes())
    p = save(tmp_path, f"m_{kind}.png", im)
    ours = load_mask(p)
    ref = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
    assert ours.dtype == np.uint8 and ours.shape == (11, 13)
    assert np.abs(ours.astype(int) - ref.astype(int)).max() <= 1  # luma rounding may differ by one level
    if kind in ("L", "1", "LA"):  # no colour conversion involved: exact
        np.testing.assert_array_equal(ours, ref)


def test_mask_binary_exact(tmp_path: Path) -> None:
    m = (RNG.random((9, 9)) > 0.5).astype(np.uint8) * 255
    for name, im in [("m.png", Image.fromarray(m, "L")), ("m_rgb.png", Image.fromarray(np.dstack([m] * 3), "RGB"))]:
        np.testing.assert_array_equal(load_mask(save(tmp_path, name, im)), m)


def test_mask_sixteen_bit(tmp_path: Path) -> None:
    v = np.array([[0, 65535, 257]], dtype=np.uint16)
    np.testing.assert_array_equal(load_mask(save(tmp_path, "m16.png", Image.fromarray(v))), [[0, 255, 1]])
