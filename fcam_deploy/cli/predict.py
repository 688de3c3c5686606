"""``fcam predict MODEL IMAGES... --out DIR``: localize images; writes an overlay PNG and a JSON per image."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

__all__ = ["register"]

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "predict",
        help="localize images with a checkpoint, .onnx or .plan; write overlays + JSON",
        description=(
            "Run a model on images of any size. For each IMAGE writes DIR/<name>.png (heatmap + boxes over the "
            "image) and DIR/<name>.json (class, score, boxes in original pixels, backend, providers)."
        ),
    )
    p.add_argument("model", type=Path, help="checkpoint directory, .onnx or TensorRT .plan")
    p.add_argument("images", type=Path, nargs="+", help="image files")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--backend", choices=("auto", "torch", "onnxruntime", "tensorrt"), default="auto")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--plugins", type=Path, default=None, help="custom-op / plugin library for custom-op graphs")
    p.add_argument("--method", default=None, help="map method (checkpoints only)")
    p.add_argument("--max-boxes", type=int, default=8)
    p.add_argument("--alpha", type=float, default=0.5, help="heatmap opacity in the overlay")
    p.set_defaults(func=_run)


def _load_image(path: Path) -> Any:
    try:
        from fcam_deploy.data import load_image_rgb
    except ImportError:
        load_image_rgb = None
    if load_image_rgb is not None:
        return load_image_rgb(path)
    from PIL import Image, UnidentifiedImageError

    from fcam_deploy.errors import ImageError

    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, UnidentifiedImageError) as exc:
        raise ImageError(f"{path}: cannot read image ({exc})") from exc


def _run(args: argparse.Namespace) -> int:
    from fcam_deploy.runtime import Localizer
    from fcam_deploy.runtime.overlay import render_overlay

    loc = Localizer.load(
        args.model,
        backend=args.backend,
        device=args.device,
        plugin_library=args.plugins,
        method=args.method,
        max_boxes=args.max_boxes,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    seen: dict[str, int] = {}
    summary = []
    with loc:
        for path in args.images:
            image = _load_image(path)
            pred = loc.predict(image)
            stem = path.stem
            seen[stem] = seen.get(stem, 0) + 1
            if seen[stem] > 1:
                stem = f"{stem}_{seen[stem]}"
            record = {"image": str(path), **pred.to_dict(), "providers": list(loc.providers),
                      "fell_back_to_cpu": loc.fell_back_to_cpu, "method": loc.metadata.method}
            (args.out / f"{stem}.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
            render_overlay(image, pred, args.alpha).save(args.out / f"{stem}.png")
            summary.append({"image": str(path), "class": pred.class_name, "score": round(pred.score, 4),
                            "boxes": [list(b) for b in pred.boxes]})
    print(json.dumps({"out": str(args.out), "backend": loc.backend, "predictions": summary}))
    return 0
