"""Safe image and mask loading.

:func:`load_image_rgb` turns any supported file into a fully decoded 8-bit RGB ``PIL.Image``, or raises
:class:`fcam_deploy.errors.ImageError` saying what is wrong:

* missing file, unreadable/corrupt file, unknown format -> ``ImageError``;
* truncated file -> ``ImageError`` (PIL's ``ImageFile.LOAD_TRUNCATED_IMAGES`` is never enabled here; if some
  other code enabled it globally, loading refuses to run rather than silently accept truncated data);
* decompression bombs: ``width * height`` is read from the header and checked against ``max_pixels`` **before**
  any pixel is decoded; PIL's global ``Image.MAX_IMAGE_PIXELS`` is never changed (PIL's own check still applies:
  above ``2 * Image.MAX_IMAGE_PIXELS`` PIL refuses at open time, which is reported as the same ``ImageError``);
* modes: ``RGB`` as is; ``L``/``1`` replicated to RGB; ``P`` via its palette (with transparency composited like
  RGBA); ``RGBA``/``LA``/``PA``/``RGBa``/``La`` composited over ``background`` (default white (255, 255, 255));
  16-bit grayscale (``I;16``, ``I;16L``, ``I;16B``, ``I``) scaled to 8 bits with ``round(v * 255 / 65535)``
  (mode ``I`` must hold values in [0, 65535]); ``CMYK`` and ``YCbCr`` converted by PIL's standard
  conversion (naive CMYK, no ICC colour management); anything else (``F``, ``LAB``, ``HSV``, ...) is rejected.
* multi-frame files (GIF, TIFF) use their first frame; EXIF orientation is **not** applied (the protocol's
  boxes are in stored-pixel coordinates, as PIL and OpenCV read them without rotation).

:func:`load_mask` loads a mask as uint8 (H, W) grayscale, like ``cv2.imread(path, cv2.IMREAD_GRAYSCALE)``:
colour -> luma (ITU-R 601-2), alpha dropped, 16-bit scaled to 8-bit. Binarisation (> 0.5 after a nearest
resize) is the metrics' job (docs/protocol.md §1.4).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fcam_deploy.errors import ImageError

if TYPE_CHECKING:  # pragma: no cover
    from numpy.typing import NDArray
    from PIL import Image as PILImage

__all__ = ["DEFAULT_MAX_PIXELS", "decode_image_rgb", "image_size", "load_image_rgb", "load_mask"]

#: Default pixel limit (width * height) above which an image is refused as a decompression bomb
#: (PIL's own default warning limit, 89.5 megapixels).
DEFAULT_MAX_PIXELS: int = 89_478_485

_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_SIXTEEN = {"I;16", "I;16L", "I;16B", "I;16N", "I"}


def _open_checked(path: str | Path, max_pixels: int, data: bytes | None = None) -> PILImage.Image:
    """Open (header only), check the pixel count, then decode fully. Returns the decoded image.

    With ``data`` the image is decoded from those bytes and ``path`` only names it in messages.
    """
    import io

    from PIL import Image, ImageFile, UnidentifiedImageError

    p = Path(path)
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise ImageError(
            f"{p}: PIL.ImageFile.LOAD_TRUNCATED_IMAGES is enabled by some other code; truncated images would be "
            f"accepted silently (fix: leave it False)"
        )
    if max_pixels < 1:
        raise ImageError(f"max_pixels={max_pixels}: need a positive pixel limit")
    if data is None and not p.is_file():
        raise ImageError(f"{p}: image file not found (fix: check the path and the image root)")
    if data is not None and not data:
        raise ImageError(f"{p}: empty image data (0 bytes)")
    try:
        im = Image.open(p if data is None else io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{p}: refused as a decompression bomb ({exc}) (fix: downscale the image)") from None
    except UnidentifiedImageError:
        raise ImageError(
            f"{p}: not a readable image (corrupt file or unsupported format) (fix: re-encode it as PNG or JPEG)"
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{p}: cannot open image: {exc} (fix: re-encode it as PNG or JPEG)") from None
    try:
        w, h = im.size
        if w < 1 or h < 1:
            raise ImageError(f"{p}: image has an empty size {w}x{h}")
        if w * h > max_pixels:
            raise ImageError(
                f"{p}: {w}x{h} = {w * h} pixels exceeds the limit of {max_pixels} (decompression bomb guard; "
                f"fix: downscale the image or raise max_pixels)"
            )
        im.seek(0)
        im.load()
    except ImageError:
        im.close()
        raise
    except Image.DecompressionBombError as exc:
        im.close()
        raise ImageError(f"{p}: refused as a decompression bomb ({exc}) (fix: downscale the image)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        im.close()
        hint = "truncated or corrupt" if "truncat" in str(exc).lower() else "corrupt"
        raise ImageError(f"{p}: cannot decode image ({hint}): {exc} (fix: re-download or re-encode the file)") from None
    return im


def _sixteen_to_l(p: Path, im: PILImage.Image) -> PILImage.Image:
    """16-bit (or 32-bit int holding 16-bit values) grayscale -> 8-bit L, ``round(v * 255 / 65535)``."""
    from PIL import Image

    arr = np.asarray(im)
    if arr.dtype.kind not in "iu":
        raise ImageError(f"{p}: unexpected pixel type {arr.dtype} for mode {im.mode}")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() > 65535):
        raise ImageError(
            f"{p}: mode {im.mode} holds values in [{arr.min()}, {arr.max()}], outside the 16-bit range "
            f"(fix: save it as 8- or 16-bit)"
        )
    out = ((arr * 255 + 32767) // 65535).astype(np.uint8)
    return Image.fromarray(out, mode="L")


def _composite(im: PILImage.Image, background: tuple[int, int, int]) -> PILImage.Image:
    from PIL import Image

    rgba = im.convert("RGBA")
    bg = Image.new("RGBA", rgba.size, (*background, 255))
    return Image.alpha_composite(bg, rgba).convert("RGB")


def load_image_rgb(
    path: str | Path,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    background: tuple[int, int, int] = (255, 255, 255),
) -> PILImage.Image:
    """Load an image as a fully decoded 8-bit RGB ``PIL.Image`` (file closed), with the safety checks of the
    module docstring.

    Args:
        path: the image file.
        max_pixels: refuse images with ``width * height`` above this (checked from the header, before decoding).
        background: RGB colour transparent images are composited over.

    Raises:
        ImageError: missing, corrupt, truncated, too large or of an unsupported mode.
    """
    p = Path(path)
    if len(background) != 3 or not all(0 <= int(c) <= 255 for c in background):
        raise ImageError(f"background={background!r}: need an RGB triple of 0..255 values")
    return _to_rgb(p, _open_checked(p, max_pixels), background)


def decode_image_rgb(
    data: bytes,
    name: str = "<image bytes>",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    background: tuple[int, int, int] = (255, 255, 255),
) -> PILImage.Image:
    """:func:`load_image_rgb` for an encoded image held in memory (e.g. an HTTP request body).

    Args:
        data: the encoded file's bytes (any format PIL reads; callers restrict formats themselves).
        name: how messages name the image.
        max_pixels: refuse images with ``width * height`` above this (checked from the header, before decoding).
        background: RGB colour transparent images are composited over.

    Raises:
        ImageError: empty, corrupt, truncated, too large or of an unsupported mode.
    """
    p = Path(name)
    if len(background) != 3 or not all(0 <= int(c) <= 255 for c in background):
        raise ImageError(f"background={background!r}: need an RGB triple of 0..255 values")
    return _to_rgb(p, _open_checked(p, max_pixels, data=bytes(data)), background)


def _to_rgb(p: Path, im: PILImage.Image, background: tuple[int, int, int]) -> PILImage.Image:
    """The decoded image ``im`` (closed here) as 8-bit RGB, by the mode rules of the module docstring."""
    try:
        mode = im.mode
        if mode == "RGB":
            out = im.copy()
        elif mode in ("L", "1"):
            out = im.convert("RGB")
        elif mode == "P":
            if "transparency" in im.info:
                out = _composite(im, background)
            else:
                out = im.convert("RGB")
        elif mode in _ALPHA_MODES:
            out = _composite(im, background)
        elif mode in _SIXTEEN:
            out = _sixteen_to_l(p, im).convert("RGB")
        elif mode in ("CMYK", "YCbCr"):
            out = im.convert("RGB")
        else:
            raise ImageError(f"{p}: unsupported image mode {mode!r} (fix: save it as 8-bit RGB, gray or RGBA)")
    finally:
        im.close()
    return out


def image_size(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """``(width, height)`` from the image header, without decoding pixels (bomb check included)."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise ImageError(f"{p}: image file not found (fix: check the path and the image root)")
    try:
        with Image.open(p) as im:
            w, h = im.size
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{p}: refused as a decompression bomb ({exc}) (fix: downscale the image)") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{p}: not a readable image: {exc}") from None
    if w * h > max_pixels:
        raise ImageError(f"{p}: {w}x{h} = {w * h} pixels exceeds the limit of {max_pixels} (decompression bomb guard)")
    return int(w), int(h)


def load_mask(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> NDArray[np.uint8]:
    """Load a mask as uint8 (H, W) grayscale (luma of colour masks, alpha dropped, 16-bit scaled to 8-bit).

    Raises:
        ImageError: as :func:`load_image_rgb`.
    """
    p = Path(path)
    im = _open_checked(p, max_pixels)
    try:
        mode = im.mode
        if mode == "L":
            arr = np.array(im, dtype=np.uint8)
        elif mode == "1":
            arr = np.array(im.convert("L"), dtype=np.uint8)
        elif mode in _SIXTEEN:
            arr = np.array(_sixteen_to_l(p, im), dtype=np.uint8)
        elif mode in ("RGB", "P", "CMYK", "YCbCr"):
            arr = np.array(im.convert("RGB").convert("L"), dtype=np.uint8)
        elif mode in ("RGBA", "RGBa"):
            arr = np.array(im.convert("RGBA").convert("RGB").convert("L"), dtype=np.uint8)
        elif mode in ("LA", "La"):
            arr = np.array(im.getchannel(0), dtype=np.uint8)
        elif mode == "PA":
            arr = np.array(im.convert("RGBA").convert("RGB").convert("L"), dtype=np.uint8)
        else:
            raise ImageError(f"{p}: unsupported mask mode {mode!r} (fix: save masks as 8-bit grayscale PNG)")
    finally:
        im.close()
    return arr
