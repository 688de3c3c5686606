"""``fcam predict MODEL IMAGES... --out DIR``: localize images; writes an overlay PNG and a JSON per image.

Output names are planned before any work: ``<stem>.png`` / ``<stem>.json``, with ``_2``, ``_3`` ... added when two
inputs share a stem or when the name is taken by a file this command did not write (an input photo, any other
file). Files a previous ``fcam predict`` wrote (a JSON record with its keys, a PNG carrying its text chunk) are
replaced, so a rerun into the same folder refreshes its results. Each image's PNG is written first and its JSON
last, both atomically: a JSON record exists only for a finished image.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["OVERLAY_TAG", "register"]

log = logging.getLogger(__name__)

#: PNG text key of every overlay ``fcam predict`` writes (how a rerun recognises its own files).
OVERLAY_TAG = "fcam_deploy.prediction"
_RECORD_KEYS = frozenset({"image", "class_index", "class_name", "score", "boxes", "backend"})
#: Default pixel limit of an input image: 64 megapixels keeps ``fcam predict`` under about 1 GiB of memory
#: (image, map at the original size, mask, overlay); raise it with --max-pixels.
DEFAULT_PREDICT_MAX_PIXELS = 64_000_000


def _alpha(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(v) and 0.0 <= v <= 1.0):
        raise argparse.ArgumentTypeError(f"{text!r}: the heatmap opacity must be in [0, 1]")
    return v


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: need an integer >= 1")
    return v


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "predict",
        help="localize images with a checkpoint, .onnx or .plan; write overlays + JSON",
        description=(
            "Run a model on images of any size. For each IMAGE writes DIR/<name>.png (heatmap + boxes over the "
            "image) and DIR/<name>.json (class, score, boxes in original pixels, backend, providers). <name> is "
            "the image's stem, made unique with _2, _3 ... when stems collide or the name is taken by a file "
            "fcam predict did not write (an input is never overwritten)."
        ),
    )
    p.add_argument("model", type=Path, help="checkpoint directory, .onnx or TensorRT .plan")
    p.add_argument("images", type=Path, nargs="+", help="image files")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--backend", choices=("auto", "torch", "onnxruntime", "tensorrt"), default="auto")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--plugins", type=Path, default=None, help="custom-op / plugin library for custom-op graphs")
    p.add_argument("--method", default=None, help="map method (checkpoints only)")
    p.add_argument("--max-boxes", type=_positive_int, default=8)
    p.add_argument("--alpha", type=_alpha, default=0.5, help="heatmap opacity in the overlay, in [0, 1]")
    p.add_argument(
        "--max-pixels",
        type=_positive_int,
        default=DEFAULT_PREDICT_MAX_PIXELS,
        help=f"refuse larger images (width x height; default {DEFAULT_PREDICT_MAX_PIXELS}, about 1 GiB of memory)",
    )
    p.set_defaults(func=_run)


def _load_rgb(path: Path, max_pixels: int) -> Any:
    """Decode ``path`` to a writable uint8 (h, w, 3) RGB array (one copy of the pixels kept)."""
    import numpy as np

    loader: Callable[..., Any] | None
    try:
        from fcam_deploy.data import load_image_rgb as loader
    except ImportError:  # the lean install has no data package: same checks, fewer modes
        loader = None
    if loader is not None:
        img = loader(path, max_pixels=max_pixels)
    else:
        from PIL import Image, UnidentifiedImageError

        from fcam_deploy.errors import ImageError

        try:
            with Image.open(path) as im:
                if im.width * im.height > max_pixels:
                    raise ImageError(
                        f"{path}: {im.width}x{im.height} pixels exceeds the limit of {max_pixels} "
                        "(fix: downscale the image or raise --max-pixels)"
                    )
                img = im.convert("RGB")
        except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
            raise ImageError(f"{path}: cannot read image ({exc})") from exc
    try:
        return np.array(img, dtype=np.uint8)
    finally:
        img.close()


def _is_record(path: Path) -> bool:
    """A JSON record written by ``fcam predict``."""
    try:
        if path.stat().st_size > 1 << 20:
            return False
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and _RECORD_KEYS <= doc.keys()


def _is_overlay(path: Path) -> bool:
    """A PNG overlay written by ``fcam predict`` (its text chunk; only the header is read)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.format == "PNG" and OVERLAY_TAG in getattr(im, "text", {})
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return False


def _plan_names(images: list[Path], out: Path) -> list[str]:
    """One output name per input: unique (case-insensitively), never an input file, never a foreign file."""
    inputs = [p for p in images if p.exists()]

    def is_input(candidate: Path) -> bool:
        for src in inputs:
            try:
                if candidate.exists() and os.path.samefile(candidate, src):
                    return True
            except OSError:
                continue
            if candidate.absolute() == src.absolute():
                return True
        return False

    def free(name: str) -> bool:
        png, rec = out / f"{name}.png", out / f"{name}.json"
        if is_input(png) or is_input(rec):
            return False
        if rec.exists() and (rec.is_dir() or not _is_record(rec)):
            return False
        return not (png.exists() and (png.is_dir() or not _is_overlay(png)))

    taken: set[str] = set()
    names = []
    for path in images:
        base = path.stem or "image"
        k = 1
        while True:
            name = base if k == 1 else f"{base}_{k}"
            if name.casefold() not in taken and free(name):
                break
            k += 1
        taken.add(name.casefold())
        names.append(name)
    return names


def _save_overlay(rgb: Any, boxes: Any, caption: str, source: Path, dst: Path) -> None:
    from PIL import Image, PngImagePlugin

    from fcam_deploy._io import atomic_path
    from fcam_deploy.runtime.overlay import annotate

    img = annotate(Image.fromarray(rgb), boxes, caption)
    info = PngImagePlugin.PngInfo()
    info.add_text(OVERLAY_TAG, source.name)
    with atomic_path(dst) as tmp:
        img.save(tmp, format="PNG", pnginfo=info)


def _run(args: argparse.Namespace) -> int:
    from fcam_deploy._io import atomic_write_text
    from fcam_deploy.cli._paths import output_dir
    from fcam_deploy.errors import ModelFormatError
    from fcam_deploy.runtime import Localizer
    from fcam_deploy.runtime.overlay import blend_map

    output_dir(args.out, "--out")
    names = _plan_names(list(args.images), args.out)
    loc = Localizer.load(
        args.model,
        backend=args.backend,
        device=args.device,
        plugin_library=args.plugins,
        method=args.method,
        max_boxes=args.max_boxes,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    summary = []
    with loc:
        for path, name in zip(args.images, names, strict=True):
            rgb = _load_rgb(path, args.max_pixels)
            pred = loc.predict(rgb)
            if not (math.isfinite(pred.score) and bool(_all_finite(pred.logits))):
                raise ModelFormatError(
                    f"{args.model}: the model produced non-finite scores (NaN/inf) for {path}; its weights are "
                    "corrupt or it was exported from a diverged run (fix: re-export a good checkpoint)"
                )
            record = {
                "image": str(path),
                **pred.to_dict(),
                "providers": list(loc.providers),
                "fell_back_to_cpu": loc.fell_back_to_cpu,
                "method": loc.metadata.method,
            }
            text = json.dumps(record, indent=2, allow_nan=False) + "\n"
            boxes, caption = pred.boxes, f"{pred.class_name} {pred.score:.2f}"
            blend_map(rgb, pred.map, args.alpha, out=rgb)  # in place: no second full-size image
            summary.append(
                {
                    "image": str(path),
                    "class": pred.class_name,
                    "score": round(pred.score, 4),
                    "boxes": [list(b) for b in boxes],
                    "out": name,
                }
            )
            del pred  # the full-size map and mask are not needed for the PNG
            _save_overlay(rgb, boxes, caption, path, args.out / f"{name}.png")
            del rgb
            atomic_write_text(args.out / f"{name}.json", text)  # last: a record means a finished image
    print(json.dumps({"out": str(args.out), "backend": loc.backend, "predictions": summary}))
    return 0


def _all_finite(a: Any) -> bool:
    import numpy as np

    return bool(np.isfinite(np.asarray(a)).all())
