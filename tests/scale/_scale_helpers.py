"""Shared builders and oracles of the scale tests (a uniquely named module, imported by the tests)."""

from __future__ import annotations

import hashlib
import http.client
import json
import shutil
import socket
from pathlib import Path
from typing import Any

import numpy as np

SIZE = (40, 40)
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
CLASS_NAMES = ("dot", "ring", "bar_across")
TAU = 0.35
SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}


def export_tiny_model(path: Path, seed: int = 0) -> Path:
    """The runtime tests' tiny model: F-CAM on the ResNet18-s8 demo trunk, seeded random weights (the decoder head
    scaled so maps have contrast), exported with in-graph (standard-op) post-processing and a dynamic batch."""
    import torch

    from fcam_deploy.export.graph import LocalizationGraph
    from fcam_deploy.export.onnx_export import export_graph
    from fcam_deploy.models import FCAM, build_classifier
    from fcam_deploy.runtime.base import ModelMetadata

    torch.manual_seed(seed)
    fcam = FCAM(build_classifier("resnet18_s8", num_classes=len(CLASS_NAMES)).eval()).eval()
    with torch.no_grad():
        fcam.seg_head.weight.mul_(20.0)
    graph = LocalizationGraph(fcam, "fcam", "onnx", SIZE, MEAN, STD, TAU, max_boxes=4)
    meta = ModelMetadata(
        class_names=CLASS_NAMES,
        input_size=SIZE,
        mean=MEAN,
        std=STD,
        tau=TAU,
        method="fcam",
        postprocess="onnx",
        arch="resnet18_s8",
        fcam_deploy_version="test",
    )
    export_graph(graph, meta, path)
    return path


def _blob(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
    inside = ((yy - cy) / (0.25 * h)) ** 2 + ((xx - cx) / (0.2 * w)) ** 2 <= 1.0
    img = np.empty((h, w, 3), dtype=np.float64)
    img[...] = rng.uniform(40, 120, size=3)
    img += rng.normal(0, 8, size=(h, w, 3))
    img[inside] = rng.uniform(150, 255, size=3)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_image_set(root: Path, n_synth: int = 300) -> Path:
    """``root/synth/*.png`` (the synthetic WSOL generator, 48 px), ``root/extra/`` (24 images of other sizes,
    formats and modes), ``root/bad/`` (a corrupt, a truncated and an empty file), plus files that are not listed
    (a hidden image, a text file)."""
    from PIL import Image

    from fcam_deploy.data import SynthConfig, generate_synthetic

    tmp = root.parent / (root.name + "_synth")
    generate_synthetic(tmp, SynthConfig(size=48, num_classes=3), counts={"test": n_synth}, seed=0)
    (root / "synth").parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(tmp / "images" / "test"), str(root / "synth"))
    shutil.rmtree(tmp)
    extra = root / "extra"
    extra.mkdir()
    sizes = [(30, 50), (64, 40), (75, 100), (17, 23), (40, 40), (120, 33)]
    for i in range(24):
        h, w = sizes[i % len(sizes)]
        arr = _blob(h, w, seed=100 + i)
        kind = i % 4
        if kind == 0:
            Image.fromarray(arr).save(extra / f"e{i:02d}.png")
        elif kind == 1:
            Image.fromarray(arr).save(extra / f"e{i:02d}.jpg", quality=90)
        elif kind == 2:
            Image.fromarray(arr).convert("L").save(extra / f"e{i:02d}.png")
        else:
            rgba = np.dstack([arr, np.full(arr.shape[:2], 200, np.uint8)])
            Image.fromarray(rgba, mode="RGBA").save(extra / f"e{i:02d}.PNG")
    bad = root / "bad"
    bad.mkdir()
    (bad / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    jpg = (extra / "e01.jpg").read_bytes()
    (bad / "truncated.jpg").write_bytes(jpg[: len(jpg) // 2])
    (bad / "empty.png").write_bytes(b"")
    Image.fromarray(_blob(20, 20, 7)).save(root / ".hidden.png")
    (root / "notes.txt").write_text("not an image\n")
    return root


def listed_names(root: Path) -> list[str]:
    """The images a folder walk must find (independent of the package's walker)."""
    out = []
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        if p.is_file() and p.suffix.lower() in SUFFIXES and not any(part.startswith(".") for part in rel.parts):
            out.append(rel.as_posix())
    return sorted(out)


def reference_rows(model: Path, root: Path) -> dict[str, dict[str, Any]]:
    """``image -> expected row``: each image loaded with ``load_image_rgb`` and localized alone
    (``Localizer.predict`` on one PIL image, batch size 1, one thread); unreadable images -> an error row."""
    from fcam_deploy.data import load_image_rgb
    from fcam_deploy.errors import ImageError
    from fcam_deploy.runtime import Localizer

    loc = Localizer.load(model, threads=1, batch_size=1)
    out: dict[str, dict[str, Any]] = {}
    for name in listed_names(root):
        try:
            img = load_image_rgb(root / name)
        except ImageError:
            out[name] = {"image": name, "error": True}
            continue
        pred = loc.predict(img)
        out[name] = {
            "image": name,
            "width": img.width,
            "height": img.height,
            "class_index": pred.class_index,
            "class_name": pred.class_name,
            "score": pred.score,
            "boxes": [list(b) for b in pred.boxes],
            "tau": pred.tau,
            "error": None,
            "map": pred.map,
        }
    loc.close()
    return out


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


PRED_FIELDS = ("width", "height", "class_index", "class_name", "score", "boxes", "tau")


def assert_rows_match(rows: list[dict[str, Any]], reference: dict[str, dict[str, Any]], model_hash: str) -> None:
    """Every listed image has exactly one row, in sorted order, equal to the reference (exact floats)."""
    names = [r["image"] for r in rows]
    assert names == sorted(reference), "rows must cover every listed image once, sorted by image"
    for row in rows:
        ref = reference[row["image"]]
        assert row["model_sha256"] == model_hash
        if ref["error"]:
            assert row["error"], f"{row['image']}: expected an error row"
            assert all(row[k] is None for k in PRED_FIELDS), row
        else:
            assert row["error"] is None, row
            got = {k: row[k] for k in PRED_FIELDS}
            want = {k: ref[k] for k in PRED_FIELDS}
            assert got == want, f"{row['image']}: {got} != {want}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """One HTTP request to 127.0.0.1:port (bounded by ``timeout``); returns (status, JSON body, headers)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, json.loads(data) if data else {}, {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()
