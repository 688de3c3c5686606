"""The bad-input table: every input of the hardening issue and more, as the CLI sees them.

Each case builds its inputs in its own folder and returns the ``fcam`` argv; the expectation is either a typed
error (exit 2, ``fcam <cmd>: error:`` naming the problem, no traceback) or a correct result (exit 0 and a check).
``mem`` cases are inputs of 1 MB or less that could make a careless reader allocate gigabytes; they run in a
subprocess under an address-space limit (``test_memory_bounds.py``), the others in-process
(``test_bad_inputs.py``). Both assert that no file that existed before the command changed.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tests._support.files import jpeg_with_size, npy_header_only, png_gray1, truncated_copy
from tests._support.models import CLASS_NAMES, tiny_onnx


@dataclass
class Ctx:
    """Inputs of one case: its own folder plus the session's shared (read-only) files."""

    dir: Path
    onnx: Path  # exported F-CAM graph, 40 px
    ckpt: Path  # F-CAM checkpoint, 40 px
    data: Path  # synthetic set: train 8, test 4 images, boxes + masks
    maps: Path  # complete `fcam eval --save-maps` folder of the test split
    photo: Path  # 80 x 60 PNG

    def shared(self) -> list[Path]:
        return [self.onnx, self.ckpt, self.data, self.maps, self.photo]


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[Ctx], list[str]]
    expect: str = "error"  # "error" or "ok"
    match: str = ""  # regex the error message must contain
    check: Callable[[Ctx], None] | None = None  # for "ok" cases
    mem: bool = False  # run under the address-space limit (input <= 1 MB that could blow up memory)
    issue: str = ""  # where the issue lists it
    tags: tuple[str, ...] = field(default_factory=tuple)


CASES: list[Case] = []


def case(
    id: str,
    expect: str = "error",
    match: str = "",
    check: Callable[[Ctx], None] | None = None,
    mem: bool = False,
    issue: str = "",
) -> Callable[[Callable[[Ctx], list[str]]], Callable[[Ctx], list[str]]]:
    def deco(fn: Callable[[Ctx], list[str]]) -> Callable[[Ctx], list[str]]:
        CASES.append(Case(id, fn, expect, match, check, mem, issue))
        return fn

    return deco


# ------------------------------------------------------------------------------------------------ builders


def copy_ckpt(ctx: Ctx, edit: dict[str, object] | None = None, drop: tuple[str, ...] = ()) -> Path:
    dst = ctx.dir / "ckpt"
    shutil.copytree(ctx.ckpt, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg.update(edit or {})
    for k in drop:
        cfg.pop(k, None)
    (dst / "config.json").write_text(json.dumps(cfg))  # NaN / Infinity become the JSON extensions Python reads
    return dst


def copy_set(ctx: Ctx) -> Path:
    dst = ctx.dir / "set"
    shutil.copytree(ctx.data, dst)
    return dst


def copy_maps(ctx: Ctx) -> Path:
    dst = ctx.dir / "maps"
    shutil.copytree(ctx.maps, dst)
    return dst


def first_test_id(root: Path) -> str:
    return (root / "metadata" / "test" / "image_ids.txt").read_text().split()[0]


def score_argv(ctx: Ctx, maps: Path, data: Path | None = None, *extra: str) -> list[str]:
    return [
        "score",
        "--maps",
        str(maps),
        "--metadata",
        str(data or ctx.data),
        "--split",
        "test",
        "--json",
        str(ctx.dir / "score.json"),
        "--no-progress",
        *extra,
    ]


def predict_argv(ctx: Ctx, model: Path, *images: Path, extra: tuple[str, ...] = ()) -> list[str]:
    return ["predict", str(model), *map(str, images or (ctx.photo,)), "--out", str(ctx.dir / "out"), *extra]


def tiny(ctx: Ctx, **props: str) -> Path:
    return tiny_onnx(ctx.dir / "model.onnx", props=props)


# ------------------------------------------------------------------------------------------------ predict


def _check_no_overwrite(ctx: Ctx) -> None:
    # the input photo is untouched (snapshot) and the outputs were renamed instead
    assert (ctx.dir / "clob" / "photo_2.json").is_file() and (ctx.dir / "clob" / "photo_2.png").is_file()
    rec = json.loads((ctx.dir / "clob" / "photo_2.json").read_text())
    assert rec["image"].endswith("photo.png")


@case("predict-out-folder-holds-the-input", "ok", check=_check_no_overwrite, issue="1")
def _(ctx: Ctx) -> list[str]:
    (ctx.dir / "clob").mkdir()
    shutil.copy(ctx.photo, ctx.dir / "clob" / "photo.png")
    return ["predict", str(ctx.onnx), str(ctx.dir / "clob" / "photo.png"), "--out", str(ctx.dir / "clob")]


def _check_three_results(ctx: Ctx) -> None:
    recs = sorted(json.loads(p.read_text())["image"] for p in (ctx.dir / "o").glob("*.json"))
    assert [Path(r).name for r in recs] == ["a.jpg", "a.png", "a_2.png"], recs
    assert len(list((ctx.dir / "o").glob("*.png"))) == 3


@case("predict-colliding-stems", "ok", check=_check_three_results, issue="1")
def _(ctx: Ctx) -> list[str]:
    from PIL import Image

    src = Image.open(ctx.photo)
    names = ["a.jpg", "a.png", "a_2.png"]
    for n in names:
        src.save(ctx.dir / n)
    return ["predict", str(ctx.onnx), *(str(ctx.dir / n) for n in names), "--out", str(ctx.dir / "o")]


@case("predict-out-is-a-file", match="--out .* not a folder", issue="4")
def _(ctx: Ctx) -> list[str]:
    (ctx.dir / "taken").write_text("keep me\n")
    return ["predict", str(ctx.onnx), str(ctx.photo), "--out", str(ctx.dir / "taken")]


@case("predict-out-under-a-file", match="is a file, not a folder")
def _(ctx: Ctx) -> list[str]:
    (ctx.dir / "taken").write_text("keep me\n")
    return ["predict", str(ctx.onnx), str(ctx.photo), "--out", str(ctx.dir / "taken" / "sub")]


for _val in ("nan", "5", "-0.1", "inf", "x"):
    case(f"predict-alpha-{_val}", match="--alpha", issue="6")(
        lambda ctx, v=_val: predict_argv(ctx, ctx.onnx, extra=("--alpha", v))
    )

case("predict-max-boxes-0", match="--max-boxes")(lambda ctx: predict_argv(ctx, ctx.onnx, extra=("--max-boxes", "0")))
case("predict-max-pixels-0", match="--max-pixels")(lambda ctx: predict_argv(ctx, ctx.onnx, extra=("--max-pixels", "0")))

for _dev in ("cuda:abc", "cuda:-1", "cuda:99999999999", "tpu"):
    case(f"predict-device-{_dev}", match="device", issue="4")(
        lambda ctx, d=_dev: predict_argv(ctx, ctx.onnx, extra=("--device", d))
    )


@case("predict-truncated-png", match="cannot decode image|truncated")
def _(ctx: Ctx) -> list[str]:
    return predict_argv(ctx, ctx.onnx, truncated_copy(ctx.photo, ctx.dir / "cut.png"))


@case("predict-truncated-jpeg", match="truncated|cannot decode|cannot open")
def _(ctx: Ctx) -> list[str]:
    from PIL import Image

    Image.open(ctx.photo).save(ctx.dir / "full.jpg", quality=90)
    return predict_argv(ctx, ctx.onnx, truncated_copy(ctx.dir / "full.jpg", ctx.dir / "cut.jpg", 0.5))


@case("predict-not-an-image", match="not a readable image")
def _(ctx: Ctx) -> list[str]:
    (ctx.dir / "notes.png").write_text("this is text\n")
    return predict_argv(ctx, ctx.onnx, ctx.dir / "notes.png")


@case("predict-empty-image-file", match="not a readable image")
def _(ctx: Ctx) -> list[str]:
    (ctx.dir / "empty.jpg").write_bytes(b"")
    return predict_argv(ctx, ctx.onnx, ctx.dir / "empty.jpg")


case("predict-missing-image", match="not found")(lambda ctx: predict_argv(ctx, ctx.onnx, ctx.dir / "nope.png"))
case("predict-image-is-a-folder", match="not found")(lambda ctx: predict_argv(ctx, ctx.onnx, ctx.dir))


@case("predict-unsupported-mode-F", match="unsupported image mode")
def _(ctx: Ctx) -> list[str]:
    from PIL import Image

    Image.fromarray(np.zeros((20, 20), np.float32), mode="F").save(ctx.dir / "float.tiff")
    return predict_argv(ctx, ctx.onnx, ctx.dir / "float.tiff")


@case("predict-jpeg-header-60000x60000", match="decompression bomb|exceeds the limit", mem=True, issue="C++ 1")
def _(ctx: Ctx) -> list[str]:
    return predict_argv(ctx, ctx.onnx, jpeg_with_size(ctx.dir / "bomb.jpg", 60000, 60000))


@case("predict-png-20000x20000", match="decompression bomb|exceeds the limit", mem=True)
def _(ctx: Ctx) -> list[str]:
    return predict_argv(ctx, ctx.onnx, png_gray1(ctx.dir / "bomb.png", 20000, 20000))


@case("predict-png-81MP-over-the-default-limit", match="exceeds the limit", mem=True, issue="3")
def _(ctx: Ctx) -> list[str]:
    return predict_argv(ctx, ctx.onnx, png_gray1(ctx.dir / "big.png", 9000, 9000))


def _check_big_outputs(ctx: Ctx) -> None:
    from PIL import Image

    rec = json.loads((ctx.dir / "out" / "big.json").read_text())
    assert rec["size"] == [8000, 8000] and rec["boxes"]
    with Image.open(ctx.dir / "out" / "big.png") as im:
        assert im.size == (8000, 8000)


@case("predict-png-64MP-at-the-limit", "ok", check=_check_big_outputs, mem=True, issue="3")
def _(ctx: Ctx) -> list[str]:
    return predict_argv(ctx, ctx.onnx, png_gray1(ctx.dir / "big.png", 8000, 8000))


@case("predict-model-random-bytes", match="cannot load|not an fcam|ONNX")
def _(ctx: Ctx) -> list[str]:
    (ctx.dir / "m.onnx").write_bytes(os.urandom(4096))
    return predict_argv(ctx, ctx.dir / "m.onnx")


@case("predict-model-empty", match="cannot load|ONNX|model")
def _(ctx: Ctx) -> list[str]:
    (ctx.dir / "m.onnx").write_bytes(b"")
    return predict_argv(ctx, ctx.dir / "m.onnx")


@case("predict-model-plan-without-sidecar", match="sidecar|tensorrt|TensorRT")
def _(ctx: Ctx) -> list[str]:
    (ctx.dir / "m.plan").write_bytes(os.urandom(1024))
    return predict_argv(ctx, ctx.dir / "m.plan")


case("predict-model-missing", match="no such|not found|does not exist")(
    lambda ctx: predict_argv(ctx, ctx.dir / "missing.onnx")
)
case("predict-model-folder-without-config", match="config.json")(lambda ctx: predict_argv(ctx, ctx.dir))


@case("predict-nan-weights-in-onnx", match="non-finite", issue="5")
def _(ctx: Ctx) -> list[str]:
    w = np.full((3, len(CLASS_NAMES)), np.nan, np.float32)
    return predict_argv(ctx, tiny_onnx(ctx.dir / "nan.onnx", weights=w))


# ------------------------------------------------------------------------------------------------ model metadata

_META_CASES = {
    "input_size-60000": ({"input_size": "[60000, 60000]"}, "input_size", True, "3"),
    "input_size-64-on-a-40-graph": ({"input_size": "[64, 64]"}, "input_size", False, "3"),
    "input_size-floats": ({"input_size": "[40.7, 40.2]"}, "input_size", False, "6"),
    "input_size-bools": ({"input_size": "[true, true]"}, "input_size", False, ""),
    "class_names-a-string": ({"class_names": '"abc"'}, "class_names", False, "6"),
    "class_names-too-few": ({"class_names": '["only"]'}, "classes", False, "6"),
    "class_names-duplicates": ({"class_names": '["a", "a", "b"]'}, "class names", False, ""),
    "class_names-not-json": ({"class_names": "[dot"}, "metadata", False, ""),
    "mean-nan": ({"mean": "[NaN, 0.4, 0.4]"}, "mean/std", False, "5"),
    "std-infinity": ({"std": "[Infinity, 0.2, 0.2]"}, "mean/std", False, "5"),
    "std-zero": ({"std": "[0.0, 0.2, 0.2]"}, "mean/std", False, ""),
    "tau-nan": ({"tau": "nan"}, "tau", False, "5"),
    "tau-2": ({"tau": "2.0"}, "tau", False, ""),
    "format-version-99": ({"format_version": "99"}, "version", False, ""),
    "not-fcam-format": ({"format": "other"}, "not an fcam-deploy model", False, ""),
    "method-unknown": ({"method": "magic"}, "method", False, ""),
    "postprocess-unknown": ({"postprocess": "fused"}, "postprocess", False, ""),
    "layout-nchw": ({"input_layout": "NCHW-float"}, "input_layout", False, ""),
}
for _name, (_props, _match, _mem, _issue) in _META_CASES.items():
    case(f"onnx-metadata-{_name}", match=_match, mem=_mem, issue=_issue)(
        lambda ctx, p=_props: predict_argv(ctx, tiny(ctx, **p))
    )


@case("onnx-graph-classes-differ-from-metadata", match="classes")
def _(ctx: Ctx) -> list[str]:
    return predict_argv(ctx, tiny_onnx(ctx.dir / "m.onnx", graph_classes=5))


# ------------------------------------------------------------------------------------------------ checkpoints

_CKPT_CASES = {
    "input_size-int": ({"input_size": 96}, "input_size", False, "4"),
    "input_size-60000": ({"input_size": [60000, 60000]}, "input_size", True, "3"),
    "input_size-floats": ({"input_size": [96.7, 96.2]}, "input_size", False, "6"),
    "mean-scalar": ({"mean": 0.5}, "mean", False, "4"),
    "mean-nan": ({"mean": [float("nan"), 0.4, 0.4]}, "mean", False, "5"),
    "std-infinity": ({"std": [float("inf"), 0.2, 0.2]}, "std", False, "5"),
    "std-negative": ({"std": [-0.2, 0.2, 0.2]}, "std", False, ""),
    "threshold-nan": ({"threshold": float("nan")}, "threshold", False, ""),
    "class_names-string": ({"class_names": "abc"}, "class_names", False, "6"),
    "class_names-count": ({"class_names": ["one"]}, "class_names", False, "6"),
    "num_classes-bool": ({"num_classes": True}, "num_classes", False, ""),
    "arch-unknown": ({"arch": "resnet9000"}, "arch", False, ""),
    "kind-unknown": ({"kind": "detector"}, "kind", False, ""),
    "format_version-2": ({"format_version": 2}, "format_version", False, ""),
    "weights-digest-mismatch": ({"weights_sha256": "0" * 64}, "SHA-256", False, ""),
}
for _name, (_edit, _match, _mem, _issue) in _CKPT_CASES.items():
    case(f"checkpoint-{_name}", match=_match, mem=_mem, issue=_issue)(
        lambda ctx, e=_edit: predict_argv(ctx, copy_ckpt(ctx, e))
    )

case("checkpoint-missing-key", match="missing keys")(lambda ctx: predict_argv(ctx, copy_ckpt(ctx, drop=("mean",))))


@case("checkpoint-config-not-json", match="not valid JSON")
def _(ctx: Ctx) -> list[str]:
    d = copy_ckpt(ctx)
    (d / "config.json").write_text("{ not json")
    return predict_argv(ctx, d)


@case("checkpoint-weights-missing", match="model.safetensors")
def _(ctx: Ctx) -> list[str]:
    d = copy_ckpt(ctx)
    (d / "model.safetensors").unlink()
    return predict_argv(ctx, d)


@case("checkpoint-weights-are-a-pickle", match="safetensors|SHA-256")
def _(ctx: Ctx) -> list[str]:
    import pickle

    d = copy_ckpt(ctx, drop=("weights_sha256",))
    (d / "model.safetensors").write_bytes(pickle.dumps({"x": 1}))
    return predict_argv(ctx, d)


@case("checkpoint-nan-weights", match="NaN", issue="5")
def _(ctx: Ctx) -> list[str]:
    import hashlib

    from safetensors.torch import load_file, save_file

    d = copy_ckpt(ctx)
    sd = load_file(str(d / "model.safetensors"))
    key = next(k for k, v in sd.items() if v.is_floating_point() and v.numel() > 1)
    sd[key] = sd[key].clone()
    sd[key].view(-1)[0] = float("nan")
    save_file(sd, str(d / "model.safetensors"), metadata={"format": "fcam-deploy-checkpoint"})
    cfg = json.loads((d / "config.json").read_text())
    cfg["weights_sha256"] = hashlib.sha256((d / "model.safetensors").read_bytes()).hexdigest()
    (d / "config.json").write_text(json.dumps(cfg))
    return predict_argv(ctx, d)


# ------------------------------------------------------------------------------------------------ maps / score


@case("score-mixed-maps-folder-interrupted-run", match="never finished", issue="2")
def _(ctx: Ctx) -> list[str]:
    from fcam_deploy.metrics.dataset import MapsWriter

    maps = copy_maps(ctx)
    w = MapsWriter(maps)  # a second run starts into the complete folder and dies after one map
    w.begin(method="fcam")
    w.add(first_test_id(ctx.data), np.full((224, 224), 0.5, np.float32))
    return score_argv(ctx, maps, None, "--predictions", str(maps / "predictions.json"))


@case("score-map-of-another-run", match="another run", issue="2")
def _(ctx: Ctx) -> list[str]:
    maps = copy_maps(ctx)
    target = maps / f"{first_test_id(ctx.data)}.npy"
    np.save(target, np.full((224, 224), 0.25, np.float32))  # a valid map, but not the run's
    return score_argv(ctx, maps)


@case("score-predictions-of-another-run", match="predictions.json")
def _(ctx: Ctx) -> list[str]:
    maps = copy_maps(ctx)
    preds = json.loads((maps / "predictions.json").read_text())
    (maps / "predictions.json").write_text(json.dumps({k: v[::-1] for k, v in preds.items()}))
    return score_argv(ctx, maps, None, "--predictions", str(maps / "predictions.json"))


@case("score-no-manifest", match="no maps_manifest.json", issue="2")
def _(ctx: Ctx) -> list[str]:
    maps = copy_maps(ctx)
    (maps / "maps_manifest.json").unlink()
    return score_argv(ctx, maps)


@case("score-manifest-of-a-limited-run", match="no map for")
def _(ctx: Ctx) -> list[str]:
    maps = copy_maps(ctx)
    doc = json.loads((maps / "maps_manifest.json").read_text())
    first = next(iter(doc["maps"]))
    doc["maps"] = {first: doc["maps"][first]}
    doc["num_maps"] = 1
    (maps / "maps_manifest.json").write_text(json.dumps(doc))
    return score_argv(ctx, maps)


@case("score-manifest-not-json", match="unreadable maps manifest")
def _(ctx: Ctx) -> list[str]:
    maps = copy_maps(ctx)
    (maps / "maps_manifest.json").write_text("{")
    return score_argv(ctx, maps)


@case("score-manifest-of-another-split", match="split")
def _(ctx: Ctx) -> list[str]:
    maps = copy_maps(ctx)
    doc = json.loads((maps / "maps_manifest.json").read_text())
    doc["split"] = "val"
    (maps / "maps_manifest.json").write_text(json.dumps(doc))
    return score_argv(ctx, maps)


def _bad_map(ctx: Ctx, write: Callable[[Path], object]) -> list[str]:
    maps = copy_maps(ctx)
    (maps / "maps_manifest.json").unlink()  # a folder of another tool: scored with --no-manifest
    write(maps / f"{first_test_id(ctx.data)}.npy")
    return score_argv(ctx, maps, None, "--no-manifest")


case("score-npy-header-60000x60000", match="224x224", mem=True, issue="3")(
    lambda ctx: _bad_map(ctx, lambda p: npy_header_only(p, (60000, 60000)))
)
case("score-npy-object-array", match="float16/32/64")(
    lambda ctx: _bad_map(ctx, lambda p: np.save(p, np.empty((224, 224), dtype=object), allow_pickle=True))
)
case("score-npy-nan", match="NaN")(lambda ctx: _bad_map(ctx, lambda p: np.save(p, np.full((224, 224), np.nan))))
case("score-npy-above-1", match=r"\[0, 1\]")(lambda ctx: _bad_map(ctx, lambda p: np.save(p, np.full((224, 224), 2.0))))
case("score-npy-int", match="float16/32/64")(
    lambda ctx: _bad_map(ctx, lambda p: np.save(p, np.zeros((224, 224), np.int64)))
)
case("score-npy-truncated", match="truncated|not a readable")(
    lambda ctx: _bad_map(ctx, lambda p: npy_header_only(p, (224, 224), payload=b"\x00" * 100))
)
case("score-npy-wrong-shape", match="224x224")(lambda ctx: _bad_map(ctx, lambda p: np.save(p, np.zeros((100, 100)))))
case("score-npy-not-npy", match="not a readable")(lambda ctx: _bad_map(ctx, lambda p: p.write_text("hello")))


def _check_unmanaged_scores(ctx: Ctx) -> None:
    res = json.loads((ctx.dir / "score.json").read_text())
    assert res["num_images"] == 4 and res["PxAP"] is not None


@case("score-no-manifest-flag-on-other-tools-maps", "ok", check=_check_unmanaged_scores)
def _(ctx: Ctx) -> list[str]:
    maps = copy_maps(ctx)
    (maps / "maps_manifest.json").unlink()
    return score_argv(ctx, maps, None, "--no-manifest")


def _mask_case(ctx: Ctx, make: Callable[[Path, Path], None]) -> list[str]:
    data = copy_set(ctx)
    rel = (data / "metadata" / "test" / "localization_masks.txt").read_text().splitlines()[0].split(",")[1]
    make(data / "masks" / rel, data)
    return score_argv(ctx, ctx.maps, data)


case("score-mask-png-30000x30000", match="decompression bomb|exceeds the limit", mem=True, issue="3")(
    lambda ctx: _mask_case(ctx, lambda p, d: png_gray1(p, 30000, 30000) and None)
)


def _mask_other_size(p: Path, d: Path) -> None:
    from PIL import Image

    Image.new("L", (128, 128), 0).save(p)


case("score-mask-size-differs-from-image", match="its image is", issue="3")(
    lambda ctx: _mask_case(ctx, _mask_other_size)
)


def _mask_symlink_out(p: Path, d: Path) -> None:
    outside = d.parent / "outside.png"
    shutil.copy(p, outside)
    p.unlink()
    p.symlink_to(outside)


case("score-mask-symlink-out-of-root", match="outside the mask root", issue="6")(
    lambda ctx: _mask_case(ctx, _mask_symlink_out)
)


@case("score-image-sizes-disagree-with-image", match="on disk but listed", issue="6")
def _(ctx: Ctx) -> list[str]:
    data = copy_set(ctx)
    sizes = data / "metadata" / "test" / "image_sizes.txt"
    lines = sizes.read_text().splitlines()
    iid = lines[0].split(",")[0]
    lines[0] = f"{iid},70,70"  # the image is 64 x 64; boxes still fit in 70 x 70
    sizes.write_text("\n".join(lines) + "\n")
    return score_argv(ctx, ctx.maps, data)


@case("score-json-is-a-directory", match="--json .* is a directory", issue="4")
def _(ctx: Ctx) -> list[str]:
    (ctx.dir / "score.json").mkdir()
    return score_argv(ctx, ctx.maps)


@case("score-json-is-the-predictions-file", match="one of the command's inputs")
def _(ctx: Ctx) -> list[str]:
    maps = copy_maps(ctx)
    return [
        "score",
        "--maps",
        str(maps),
        "--metadata",
        str(ctx.data),
        "--split",
        "test",
        "--predictions",
        str(maps / "predictions.json"),
        "--json",
        str(maps / "predictions.json"),
        "--no-progress",
    ]


@case("score-metadata-crlf", match="CR character")
def _(ctx: Ctx) -> list[str]:
    data = copy_set(ctx)
    p = data / "metadata" / "test" / "class_labels.txt"
    p.write_bytes(p.read_bytes().replace(b"\n", b"\r\n"))
    return score_argv(ctx, ctx.maps, data)


# ------------------------------------------------------------------------------------------------ eval


def eval_argv(ctx: Ctx, data: Path | None = None, *extra: str) -> list[str]:
    return [
        "eval",
        "--checkpoint",
        str(ctx.ckpt),
        "--data",
        str(data or ctx.data),
        "--split",
        "test",
        "--json",
        str(ctx.dir / "e.json"),
        "--no-progress",
        *extra,
    ]


@case("eval-json-is-a-directory", match="--json .* is a directory")
def _(ctx: Ctx) -> list[str]:
    (ctx.dir / "e.json").mkdir()
    return eval_argv(ctx)


@case("eval-save-maps-is-a-file", match="--save-maps .* not a folder")
def _(ctx: Ctx) -> list[str]:
    (ctx.dir / "maps").write_text("keep me\n")
    return eval_argv(ctx, None, "--save-maps", str(ctx.dir / "maps"))


case("eval-batch-size-0", match="--batch-size")(lambda ctx: eval_argv(ctx, None, "--batch-size", "0"))
case("eval-limit-0", match="--limit")(lambda ctx: eval_argv(ctx, None, "--limit", "0"))


@case("eval-image-sizes-disagree-with-image", match="on disk but listed", issue="6")
def _(ctx: Ctx) -> list[str]:
    data = copy_set(ctx)
    sizes = data / "metadata" / "test" / "image_sizes.txt"
    lines = sizes.read_text().splitlines()
    lines[1] = f"{lines[1].split(',')[0]},70,70"
    sizes.write_text("\n".join(lines) + "\n")
    return eval_argv(ctx, data)


@case("eval-image-30000x30000-behind-small-sizes", match="on disk but listed|exceeds the limit|decompression", mem=True)
def _(ctx: Ctx) -> list[str]:
    data = copy_set(ctx)
    png_gray1(data / "images" / first_test_id(ctx.data), 30000, 30000)
    return eval_argv(ctx, data)


@case("eval-mask-symlink-out-of-root", match="outside|resolves outside", issue="6")
def _(ctx: Ctx) -> list[str]:
    data = copy_set(ctx)
    rel = (data / "metadata" / "test" / "localization_masks.txt").read_text().splitlines()[0].split(",")[1]
    _mask_symlink_out(data / "masks" / rel, data)
    return eval_argv(ctx, data)


# ------------------------------------------------------------------------------------------------ export / quantize


@case("export-out-is-a-directory", match="--out .* is a directory", issue="4")
def _(ctx: Ctx) -> list[str]:
    (ctx.dir / "out.onnx").mkdir()
    return ["export", "--checkpoint", str(ctx.ckpt), "--out", str(ctx.dir / "out.onnx")]


@case("export-out-is-the-checkpoint-config", match="one of the command's inputs")
def _(ctx: Ctx) -> list[str]:
    d = copy_ckpt(ctx)
    return ["export", "--checkpoint", str(d), "--out", str(d / "config.json")]


@case("export-out-under-a-file", match="is a file, not a folder")
def _(ctx: Ctx) -> list[str]:
    (ctx.dir / "f").write_text("x")
    return ["export", "--checkpoint", str(ctx.ckpt), "--out", str(ctx.dir / "f" / "m.onnx")]


case("export-checkpoint-missing", match="checkpoint")(
    lambda ctx: ["export", "--checkpoint", str(ctx.dir / "none"), "--out", str(ctx.dir / "m.onnx")]
)


@case("quantize-out-is-the-model", match="one of the command's inputs")
def _(ctx: Ctx) -> list[str]:
    m = tiny(ctx)
    return ["quantize", str(m), "--data", str(ctx.data), "--out", str(m)]


@case("quantize-images-0", match="--images")
def _(ctx: Ctx) -> list[str]:
    return ["quantize", str(tiny(ctx)), "--data", str(ctx.data), "--images", "0", "--out", str(ctx.dir / "q.onnx")]


@case("quantize-on-the-test-split", match="test split")
def _(ctx: Ctx) -> list[str]:
    return ["quantize", str(tiny(ctx)), "--data", str(ctx.data), "--split", "test", "--out", str(ctx.dir / "q.onnx")]


# ------------------------------------------------------------------------------------------------ train


case("train-fcam-classifier-missing", match="checkpoint|not a directory")(
    lambda ctx: [
        "train",
        "fcam",
        "--classifier",
        str(ctx.dir / "none"),
        "--data",
        str(ctx.data),
        "--out",
        str(ctx.dir / "run"),
        "--no-progress",
    ]
)
case("train-bad-set-override", match="--set")(
    lambda ctx: [
        "train",
        "classifier",
        "--data",
        str(ctx.data),
        "--out",
        str(ctx.dir / "run"),
        "--set",
        "epochs",
        "--no-progress",
    ]
)
case("train-fcam-on-an-fcam-checkpoint", match="needs a classifier")(
    lambda ctx: [
        "train",
        "fcam",
        "--classifier",
        str(ctx.ckpt),
        "--data",
        str(ctx.data),
        "--out",
        str(ctx.dir / "run"),
        "--no-progress",
    ]
)
