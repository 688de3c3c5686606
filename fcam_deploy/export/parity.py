"""Parity of an exported graph against PyTorch (``fcam parity``), through Polygraphy's comparator.

Both sides get the same uint8 batches (the test split, resized like :class:`fcam_deploy.runtime.Localizer`
does); the PyTorch side runs the checkpoint's :class:`~fcam_deploy.export.graph.LocalizationGraph` eagerly,
the other side runs the ``.onnx`` in ONNX Runtime (CPU). ``Comparator.run`` records both, and with
``save_dir`` it writes Polygraphy's own files so anyone can replay the check on another target::

    polygraphy run model.onnx --onnxrt --load-inputs DIR/inputs.json --load-outputs DIR/torch_outputs.json \\
        --atol map:1e-4 logits:1e-4 --rtol 0 --check-error-stat max

(``custom-op`` graphs need the custom-op library, which the Polygraphy CLI cannot register for ORT: use
:func:`compare_runs` from Python, or ``--trt --plugins libfcam_trt_plugins.so`` for TensorRT.)

Pass criteria (fp32): ``map`` and ``logits`` max abs diff <= 1e-4; ``pred_class`` identical; ``mask`` and
``boxes`` identical except at *tie pixels*, i.e. pixels whose map value lies within ``tie_atol`` of the
threshold ``tau * max(map)`` (there a 1-ulp difference between two correct bilinear implementations flips the
comparison); MaxBoxAccV2 computed from either side's maps is identical, and PxAP agrees within
:data:`PXAP_ATOL` percentage points (a pixel within 1e-4 of one of the sweep thresholds can fall in the
neighbouring histogram bin; the report has the raw values, ``metrics_identical`` says whether they are bit-equal).
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fcam_deploy.errors import ConfigError
from fcam_deploy.runtime.base import INPUT_NAME, ModelMetadata

__all__ = [
    "MAP_ATOL",
    "PXAP_ATOL",
    "TIE_ATOL",
    "ParityReport",
    "compare_runs",
    "evaluate_onnx",
    "load_split_batches",
    "run_parity",
]

log = logging.getLogger(__name__)

#: fp32 tolerance on the map and the logits.
MAP_ATOL = 1e-4
#: PxAP tolerance in percentage points: a pixel within MAP_ATOL of one of the sweep's thresholds may be counted
#: in the neighbouring histogram bin, which moves PxAP by ~1e-5 pp; MaxBoxAccV2 must be exactly equal.
PXAP_ATOL = 1e-2
#: A mask pixel is a tie when |map - tau * max(map)| <= TIE_ATOL (bigger than any fp32 map difference seen).
TIE_ATOL = 1e-4


@dataclass
class ParityReport:
    """Outcome of one parity run (``to_dict`` is the ``--json`` file)."""

    data: dict[str, Any]

    @property
    def passed(self) -> bool:
        return bool(self.data["passed"])

    def to_dict(self) -> dict[str, Any]:
        return self.data


def _require_polygraphy() -> None:
    try:
        import polygraphy  # noqa: F401
    except ImportError as exc:
        from fcam_deploy.errors import BackendUnavailableError

        raise BackendUnavailableError(
            "fcam parity needs Polygraphy (fix: pip install polygraphy, or pip install 'fcam-deploy[dev]')"
        ) from exc


def _torch_runner_cls() -> type:
    _require_polygraphy()
    from polygraphy.backend.base import BaseRunner

    class TorchGraphRunner(BaseRunner):
        """Polygraphy runner over an eager ``LocalizationGraph`` on the CPU (Polygraphy's PytRunner is CUDA-only)."""

        def __init__(self, graph: Any, meta: ModelMetadata, name: str = "pytorch") -> None:
            super().__init__(name=name, prefix="pytorch-runner")
            self._graph = graph
            self._meta = meta

        def activate_impl(self) -> None:
            self._graph.eval()

        def get_input_metadata_impl(self) -> Any:
            from polygraphy.common import TensorMetadata

            h, w = self._meta.input_size
            return TensorMetadata().add(INPUT_NAME, np.uint8, (-1, h, w, 3))

        def infer_impl(self, feed_dict: dict[str, np.ndarray]) -> OrderedDict[str, np.ndarray]:
            import time

            import torch

            x = torch.from_numpy(np.ascontiguousarray(feed_dict[INPUT_NAME]))
            start = time.perf_counter()
            with torch.inference_mode():
                outs = self._graph(x)
            self.inference_time = time.perf_counter() - start
            return OrderedDict((n, t.numpy().copy()) for n, t in zip(self._meta.output_names, outs, strict=True))

        def deactivate_impl(self) -> None:
            pass

    return TorchGraphRunner


def load_split_batches(
    data_dir: Path, split: str, size: tuple[int, int], batch_size: int = 8, limit: int | None = None
) -> tuple[list[np.ndarray], list[str], Any]:
    """uint8 ``(n, H, W, 3)`` batches of a WSOL split (resized like the Localizer), their image ids and metadata."""
    from fcam_deploy.data import load_image_rgb, open_dataset
    from fcam_deploy.runtime.preprocess import resize_uint8

    meta = open_dataset(Path(data_dir), split)
    ids = list(meta.image_ids)[: limit if limit else None]
    if not ids:
        raise ConfigError(f"{data_dir}: split {split!r} has no images")
    root = Path(data_dir) / "images"
    arrays = [resize_uint8(np.asarray(load_image_rgb(root / i), dtype=np.uint8), size) for i in ids]
    batches = [np.stack(arrays[s : s + batch_size]) for s in range(0, len(arrays), batch_size)]
    return batches, ids, meta


def _tie_aware_diff(
    ref: dict[str, np.ndarray], got: dict[str, np.ndarray], tau: float, tie_atol: float
) -> dict[str, int]:
    """Mask/box mismatches outside tie pixels for one batch."""
    out = {
        "mask_pixels_differ": 0,
        "mask_pixels_differ_non_tie": 0,
        "tie_pixels": 0,
        "box_images_differ": 0,
        "box_images_differ_non_tie": 0,
    }
    if "mask" not in ref:
        return out
    full = ref["map"].astype(np.float64)
    thr = tau * full.reshape(full.shape[0], -1).max(axis=1)[:, None, None]
    tie = np.abs(full - thr) <= tie_atol
    differ = ref["mask"] != got["mask"]
    out["mask_pixels_differ"] = int(differ.sum())
    out["mask_pixels_differ_non_tie"] = int((differ & ~tie).sum())
    out["tie_pixels"] = int(tie.sum())
    if "boxes" in ref and "boxes" in got:
        for i in range(ref["boxes"].shape[0]):
            same = np.array_equal(ref["boxes"][i], got["boxes"][i]) and ref["box_count"][i] == got["box_count"][i]
            if not same:
                out["box_images_differ"] += 1
                if not (differ[i] & tie[i]).any():  # the masks differ nowhere at a tie: a real difference
                    out["box_images_differ_non_tie"] += 1
    return out


def compare_runs(
    runners: list[Any],
    batches: list[np.ndarray],
    meta: ModelMetadata,
    map_atol: float = MAP_ATOL,
    tie_atol: float = TIE_ATOL,
    save_dir: Path | None = None,
) -> tuple[dict[str, Any], Any]:
    """Run Polygraphy runners on ``batches``, compare runner 0 (reference) with each other runner.

    Returns ``(summary, run_results)``; ``summary`` has per-output max abs diffs, Polygraphy's verdict and the
    tie-aware mask/box counts.
    """
    _require_polygraphy()
    from polygraphy.logger import G_LOGGER

    quiet = G_LOGGER.verbosity(G_LOGGER.WARNING if log.isEnabledFor(logging.INFO) else G_LOGGER.ERROR)
    with quiet:
        return _compare_runs(runners, batches, meta, map_atol, tie_atol, save_dir)


def _compare_runs(
    runners: list[Any],
    batches: list[np.ndarray],
    meta: ModelMetadata,
    map_atol: float,
    tie_atol: float,
    save_dir: Path | None,
) -> tuple[dict[str, Any], Any]:
    from polygraphy.comparator import Comparator
    from polygraphy.comparator.compare import SimpleCompareFunc

    feeds = [{INPUT_NAME: b} for b in batches]
    kwargs: dict[str, Any] = {}
    if save_dir is not None:
        save_dir.mkdir(parents=True, exist_ok=True)
        kwargs["save_inputs_path"] = str(save_dir / "inputs.json")
    results = Comparator.run(runners, data_loader=feeds, **kwargs)
    if save_dir is not None:
        from polygraphy.comparator import RunResults

        ref_only = RunResults()
        ref_only.append(results[0])
        ref_only.save(str(save_dir / "torch_outputs.json"))
        results.save(str(save_dir / "all_outputs.json"))
    atol = {"map": map_atol, "logits": map_atol, "": 0.0}
    compare = SimpleCompareFunc(atol=atol, rtol={"": 0.0}, check_error_stat="max")
    with np.errstate(divide="ignore", invalid="ignore"):  # Polygraphy's relative error of exact zeros
        accuracy = Comparator.compare_accuracy(results, compare_func=compare)
    ref_name, ref_iters = results[0]
    summary: dict[str, Any] = {"reference": ref_name, "comparisons": []}
    for other_name, other_iters in list(results)[1:]:
        maxdiff: dict[str, float] = {}
        ties = {
            "mask_pixels_differ": 0,
            "mask_pixels_differ_non_tie": 0,
            "tie_pixels": 0,
            "box_images_differ": 0,
            "box_images_differ_non_tie": 0,
        }
        for r, g in zip(ref_iters, other_iters, strict=True):
            rd = {k: r[k] for k in r}
            gd = {k: g[k] for k in g}
            for k in (n for n in meta.output_names if n in rd and n in gd):
                d = float(np.abs(rd[k].astype(np.float64) - gd[k].astype(np.float64)).max()) if rd[k].size else 0.0
                maxdiff[k] = max(maxdiff.get(k, 0.0), d)
            for k, v in _tie_aware_diff(rd, gd, meta.tau, tie_atol).items():
                ties[k] += v
        ok = (
            maxdiff.get("pred_class", 0.0) == 0
            and maxdiff["map"] <= map_atol
            and maxdiff["logits"] <= map_atol
            and ties["mask_pixels_differ_non_tie"] == 0
            and ties["box_images_differ_non_tie"] == 0
        )
        summary["comparisons"].append({"runner": other_name, "max_abs_diff": maxdiff, **ties, "passed": bool(ok)})
    summary["polygraphy_passed"] = bool(accuracy)
    summary["passed"] = all(c["passed"] for c in summary["comparisons"])
    return summary, results


def _metrics(maps: list[np.ndarray], ids: list[str], data_dir: Path, wsol_meta: Any) -> dict[str, float | None]:
    """MaxBoxAccV2 / PxAP of maps at the model size, resized to the 224x224 evaluation frame (bilinear)."""
    import torch

    from fcam_deploy.metrics import RESIZE_LENGTH, evaluate_maps

    def frame(m: np.ndarray) -> np.ndarray:
        if m.shape == (RESIZE_LENGTH, RESIZE_LENGTH):
            return m.astype(np.float32)
        t = torch.nn.functional.interpolate(
            torch.from_numpy(np.ascontiguousarray(m, dtype=np.float32))[None, None],
            size=(RESIZE_LENGTH, RESIZE_LENGTH),
            mode="bilinear",
            align_corners=False,
        )
        return t[0, 0].clamp_(0.0, 1.0).numpy()

    scores = {i: frame(m) for i, m in zip(ids, maps, strict=True)}
    mask_root = Path(data_dir) / "masks"
    res = evaluate_maps(scores, wsol_meta, mask_root=mask_root if mask_root.is_dir() else None, image_ids=ids)
    return {k: (None if res.get(k) is None else float(res[k])) for k in ("MaxBoxAccV2", "PxAP")}


def evaluate_onnx(
    model: Path,
    data_dir: Path,
    split: str = "test",
    limit: int | None = None,
    batch_size: int = 16,
    threads: int = 0,
) -> dict[str, Any]:
    """Localization of an exported graph on ONNX Runtime CPU over a split (the maps the deployed file produces).

    Returns:
        ``{"MaxBoxAccV2", "PxAP"}`` in percent (None where the split has no boxes / masks), ``num_images``,
        ``pred_class`` (list of int) and ``maps`` (list of float32 model-size maps), for comparing two graphs
        (fp32 vs INT8) on the same images.
    """
    from fcam_deploy.runtime.ort import OrtRunner

    runner = OrtRunner(Path(model), threads=threads)
    try:
        batches, ids, wsol = load_split_batches(data_dir, split, runner.metadata.input_size, batch_size, limit)
        outs = [runner.run(b) for b in batches]
    finally:
        runner.close()
    maps = [m.astype(np.float32) for o in outs for m in o["map"]]
    classes = [int(c) for o in outs for c in o["pred_class"]]
    return {**_metrics(maps, ids, data_dir, wsol), "num_images": len(ids), "pred_class": classes, "maps": maps}


def _find_checkpoint(model: Path, meta: ModelMetadata) -> Path | None:
    """The checkpoint folder named in the model's metadata, looked up next to the model file; accepted only when
    its ``weights_sha256`` equals the digest recorded at export (models carry no absolute paths)."""
    name, want = meta.extra.get("checkpoint"), meta.extra.get("checkpoint_sha256")
    if not name or not want or Path(name).name != name:
        return None
    cand = model.parent / name
    try:
        cfg = json.loads((cand / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return cand if isinstance(cfg, dict) and cfg.get("weights_sha256") == want else None


def run_parity(
    model: Path,
    data_dir: Path,
    checkpoint: Path | None = None,
    split: str = "test",
    plugin_library: Path | None = None,
    batch_size: int = 8,
    limit: int | None = None,
    save_dir: Path | None = None,
    against: Path | None = None,
    with_metrics: bool = True,
) -> ParityReport:
    """ORT CPU vs PyTorch on a WSOL split (see the module docstring for the criteria).

    Args:
        model: ``.onnx`` from ``fcam export``.
        data_dir: dataset folder (e.g. from ``fcam data synth``).
        checkpoint: checkpoint the model was exported from (default: the folder its metadata names, next to the
            model file, when its weights digest is the one recorded at export).
        against: another ``.onnx`` of the same checkpoint/method (e.g. the ``onnx`` graph for a ``custom-op``
            one) compared as a third runner.
        save_dir: write Polygraphy ``inputs.json`` / ``torch_outputs.json`` there for replay.

    Raises:
        ConfigError: no checkpoint known. ModelFormatError / BackendUnavailableError: see the runtime.
    """
    _require_polygraphy()
    from polygraphy.backend.onnxrt import OnnxrtRunner

    from fcam_deploy.export.onnx_export import build_graph, read_onnx_metadata
    from fcam_deploy.runtime.ort import make_session

    model = Path(model)
    meta = read_onnx_metadata(model)
    ckpt = checkpoint or _find_checkpoint(model, meta)
    if ckpt is None or not Path(ckpt).is_dir():
        raise ConfigError(
            f"{model}: the checkpoint it was exported from ({meta.extra.get('checkpoint', '?')}) is not next to it; "
            "pass --checkpoint CKPT"
        )
    graph, _ = build_graph(
        Path(ckpt), meta.method, meta.postprocess, meta.input_size, max(meta.max_boxes, 1), tau=meta.tau
    )
    batches, ids, wsol_meta = load_split_batches(data_dir, split, meta.input_size, batch_size, limit)
    sess = make_session(model, "cpu", plugin_library, needs_custom_ops=meta.postprocess == "custom-op")
    runners = [_torch_runner_cls()(graph, meta), OnnxrtRunner(sess, name="onnxruntime-cpu")]
    other_meta = None
    if against is not None:
        other_meta = read_onnx_metadata(Path(against))
        if other_meta.method != meta.method or other_meta.input_size != meta.input_size:
            raise ConfigError(f"--against {against}: method/input size differ from {model}")
        sess2 = make_session(
            Path(against), "cpu", plugin_library, needs_custom_ops=other_meta.postprocess == "custom-op"
        )
        runners.append(OnnxrtRunner(sess2, name=f"onnxruntime-cpu-{other_meta.postprocess}"))
    summary, results = compare_runs(runners, batches, meta, save_dir=save_dir)
    report: dict[str, Any] = {
        "model": str(model),
        "checkpoint": str(ckpt),
        "data": str(data_dir),
        "split": split,
        "num_images": len(ids),
        "method": meta.method,
        "postprocess": meta.postprocess,
        "tau": meta.tau,
        "map_atol": MAP_ATOL,
        "tie_atol": TIE_ATOL,
        "providers": list(sess.get_providers()),
        **summary,
    }
    if against is not None:
        # third runner vs the ORT model itself (shared outputs only)
        _, ort_iters = list(results)[1]
        _, oth_iters = list(results)[2]
        shared = [k for k in meta.output_names if other_meta is not None and k in other_meta.output_names]
        cross = {k: 0.0 for k in shared}
        for a, b in zip(ort_iters, oth_iters, strict=True):
            for k in shared:
                cross[k] = max(cross[k], float(np.abs(a[k].astype(np.float64) - b[k].astype(np.float64)).max()))
        report["against"] = {"model": str(against), "max_abs_diff_vs_model": cross}
    if with_metrics:
        per_runner = {}
        for name, iters in results:
            maps = [m for it in iters for m in it["map"]]
            per_runner[name] = _metrics(maps, ids, data_dir, wsol_meta)
        report["metrics"] = per_runner
        values = list(per_runner.values())
        report["metrics_max_abs_diff"] = {
            k: max((abs((v[k] or 0.0) - (values[0][k] or 0.0)) for v in values[1:]), default=0.0) for k in values[0]
        }
        report["metrics_identical"] = all(v == values[0] for v in values[1:])
        report["metrics_equal"] = bool(
            all(v["MaxBoxAccV2"] == values[0]["MaxBoxAccV2"] for v in values[1:])
            and report["metrics_max_abs_diff"].get("PxAP", 0.0) <= PXAP_ATOL
        )
        report["passed"] = bool(report["passed"] and report["metrics_equal"])
    if save_dir is not None:
        report["replay"] = (
            f"polygraphy run {model} --onnxrt --load-inputs {save_dir / 'inputs.json'} "
            f"--load-outputs {save_dir / 'torch_outputs.json'} --atol map:{MAP_ATOL} logits:{MAP_ATOL} "
            "--rtol 0 --check-error-stat max"
        )
    return ParityReport(json.loads(json.dumps(report)))
