"""``fcam localize``: localize every image of a folder or list and write one Parquet row per image.

Two engines run the same two steps, :func:`decode_batch` (read + decode with the safe loader) and
:class:`LocalizeWorker` (a :class:`fcam_deploy.runtime.Localizer` mapping decoded batches to rows):

* ``local``: in this process; ``decode_workers`` threads decode ahead while one Localizer predicts.
* ``ray``: a Ray Data pipeline: decode tasks (1 CPU each) feed a fixed pool of ``actors`` Localizer actors
  (``threads`` CPUs each, or one GPU each for ``cuda`` / TensorRT). With 1-thread CPU actors Ray Data fuses the
  decode step into the actors, so every CPU decodes and predicts and decoded pixels never cross processes; with
  GPU or multi-thread actors the decode tasks run in parallel on the CPUs the actors leave. ``address`` joins an
  existing cluster, otherwise a local one starts (and stops at the end). Every node needs fcam-deploy installed
  and the image paths (and ``save_maps``) on a filesystem it sees.

Either way this process (the driver) receives the rows, which are small, and commits them every ``commit_every``
rows as part files in ``OUT.partial/`` (written atomically with :func:`fcam_deploy._io.atomic_path`, so a killed job
leaves only whole parts). At the end the parts are merged, sorted by image and written to ``OUT`` atomically. ``resume``
skips the images that already have a row in ``OUT`` or in a committed part, so a killed job rerun with ``resume``
writes the same file as an uninterrupted run (rows are sorted and nothing in them depends on batches or time).

An unreadable image becomes an error row (``error`` says why); the job never stops for one file. Errors of the
model or runtime itself (not of one image) stop the job: they would fail every image.

Thread budget: each Localizer gets ``threads`` ONNX Runtime threads; ``actors x threads`` (plus one CPU for the
decode tasks when they are not fused into the actors) must fit the cluster's CPUs (checked), so no two pools spin
against each other. No torch here: workers import the runtime, NumPy and
PIL only.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import logging
import math
import os
import shutil
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from fcam_deploy._io import atomic_path
from fcam_deploy.errors import ConfigError, FcamError
from fcam_deploy.scale._deps import require
from fcam_deploy.scale.images import ImageSet, list_images
from fcam_deploy.scale.rows import (
    FILE_METADATA_KEY,
    SCHEMA_VERSION,
    error_row,
    model_sha256,
    prediction_row,
    read_rows,
    row_schema,
    rows_to_table,
)

__all__ = [
    "ENGINES",
    "LocalizeConfig",
    "LocalizeSummary",
    "LocalizeWorker",
    "ResultStore",
    "decode_batch",
    "localize",
    "usable_cpus",
]

log = logging.getLogger(__name__)

#: Engines of ``fcam localize``.
ENGINES: tuple[str, ...] = ("local", "ray")

_EMPTY = np.zeros((0, 0, 3), dtype=np.uint8)


def usable_cpus() -> int:
    """CPUs this process may run on (the affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class LocalizeConfig:
    """What ``fcam localize`` does (one field per command-line option).

    Attributes:
        model: an ``.onnx`` (ONNX Runtime), a TensorRT ``.plan`` or a checkpoint directory.
        images: a folder (walked recursively) or a text file listing image paths (see :func:`list_images`).
        out: the Parquet file to write.
        engine: ``local`` or ``ray``.
        address: Ray cluster to join (``ray`` engine; default: start a local cluster).
        num_cpus: CPUs of the local Ray cluster (default: this machine's usable CPUs).
        actors: Localizer actors (``ray``; default: one per CPU with 1 thread each, one per GPU for GPU actors,
            else ``(cpus - 1) // threads``).
        threads: ONNX Runtime threads per Localizer (default: ``ray`` 1; ``local`` the CPUs the decoders leave).
        decode_workers: ``local``: threads decoding ahead of the Localizer (default 1). Not used by ``ray``.
        batch_size: images per ``predict`` call (and per Ray Data batch).
        backend, device, plugin_library, max_boxes: passed to ``Localizer.load``.
        save_maps: also save each map as ``<save_maps>/<image>.npy`` (float32 (h, w) in [0, 1]).
        resume: continue ``out``: skip images that already have a row.
        overwrite: replace an existing ``out`` (and its parts).
        retry_errors: with ``resume``, localize again the images whose row is an error.
        commit_every: rows per committed part file (a killed job loses at most these, plus 30 s of work).
        max_pixels: images above this many pixels become error rows (decompression-bomb guard).
        progress: show a progress bar on stderr (when it is a terminal).
    """

    model: Path
    images: Path
    out: Path
    engine: str = "local"
    address: str | None = None
    num_cpus: int | None = None
    actors: int | None = None
    threads: int | None = None
    decode_workers: int = 1
    batch_size: int = 16
    backend: str = "auto"
    device: str = "cpu"
    plugin_library: Path | None = None
    max_boxes: int = 8
    save_maps: Path | None = None
    resume: bool = False
    overwrite: bool = False
    retry_errors: bool = False
    commit_every: int = 256
    max_pixels: int = 89_478_485
    progress: bool = True

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ConfigError(f"engine must be one of {', '.join(ENGINES)}; got {self.engine!r}")
        if self.address is not None and self.engine != "ray":
            raise ConfigError("--address joins a Ray cluster; it needs --engine ray")
        for name in ("num_cpus", "actors", "threads"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise ConfigError(f"{name} must be an integer >= 1; got {v!r}")
        for name in ("decode_workers", "batch_size", "max_boxes", "commit_every", "max_pixels"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be an integer >= 1; got {v!r}")
        if self.resume and self.overwrite:
            raise ConfigError("--resume and --overwrite exclude each other (continue the file, or replace it)")
        if self.retry_errors and not self.resume:
            raise ConfigError("--retry-errors needs --resume")


@dataclass(frozen=True)
class LocalizeSummary:
    """What a run did.

    Attributes:
        out: the file written.
        engine: ``local`` or ``ray``.
        images: images listed.
        localized: images processed by this run (rows written now, errors included).
        skipped: images skipped because a previous run already wrote their row.
        errors: error rows in the final file.
        dropped: rows of a resumed file whose image is no longer listed (not kept).
        seconds: wall time of the run (Ray start included).
        images_per_s: ``localized / seconds``.
        actors, threads: Localizers and ONNX Runtime threads each (``actors`` is 1 for ``local``).
        decode: where images were decoded.
        model_sha256: the model's hash (on every row).
    """

    out: str
    engine: str
    images: int
    localized: int
    skipped: int
    errors: int
    dropped: int
    seconds: float
    images_per_s: float
    actors: int
    threads: int
    decode: str
    model_sha256: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------------------------
# The two steps both engines run


def decode_batch(batch: Mapping[str, Any], max_pixels: int = 89_478_485) -> dict[str, np.ndarray]:
    """Read and decode a batch of images with :func:`fcam_deploy.data.images.load_image_rgb`.

    Args:
        batch: ``{"image": names, "path": absolute paths}`` (sequences of str, same length).
        max_pixels: decompression-bomb guard.

    Returns:
        ``{"image": names, "pixels": object array of uint8 (h, w, 3) RGB arrays, "error": str array}``; an image
        that cannot be used gets an empty ``(0, 0, 3)`` array and the reason in ``error`` (``""`` otherwise).
    """
    from fcam_deploy.data.images import load_image_rgb
    from fcam_deploy.errors import ImageError

    names = [str(n) for n in batch["image"]]
    paths = [str(p) for p in batch["path"]]
    pixels = np.empty(len(names), dtype=object)
    errors = np.empty(len(names), dtype=object)
    for i, path in enumerate(paths):
        try:
            pixels[i] = np.asarray(load_image_rgb(path, max_pixels=max_pixels), dtype=np.uint8)
            errors[i] = ""
        except ImageError as exc:
            pixels[i], errors[i] = _EMPTY, str(exc)
        except Exception as exc:  # noqa: BLE001 -- a decoder failure on one odd file (zlib.error, ...) is that file's
            # problem, not the job's: it becomes the file's error row
            pixels[i], errors[i] = _EMPTY, f"{path}: cannot decode image ({type(exc).__name__}: {exc})"
    return {"image": np.asarray(names, dtype=object), "pixels": pixels, "error": errors}


class LocalizeWorker:
    """One Localizer that maps decoded batches (:func:`decode_batch` output) to rows (a ``pyarrow.Table``).

    Used in-process by the ``local`` engine and as the Ray Data actor class by the ``ray`` engine. The model is
    loaded once, in the constructor, with ``threads`` ONNX Runtime threads.
    """

    def __init__(
        self,
        model: str,
        model_hash: str,
        *,
        backend: str = "auto",
        device: str = "cpu",
        plugin_library: str | None = None,
        threads: int = 1,
        max_boxes: int = 8,
        batch_size: int = 16,
        save_maps: str | None = None,
    ) -> None:
        from fcam_deploy.runtime import Localizer

        self._loc = Localizer.load(
            model,
            backend=backend,
            device=device,
            plugin_library=plugin_library,
            max_boxes=max_boxes,
            batch_size=batch_size,
            threads=threads,
        )
        self._hash = model_hash
        self._maps = Path(save_maps) if save_maps else None

    def _predict(self, images: list[np.ndarray]) -> list[Any]:
        """Predictions, or for an image the runtime rejects (an :class:`FcamError`) that error."""
        if not images:
            return []
        try:
            return list(self._loc.predict(images))
        except FcamError:
            pass
        out: list[Any] = []
        for img in images:  # find the image(s) the batch failed on; the others keep their predictions
            try:
                out.append(self._loc.predict(img))
            except FcamError as exc:
                out.append(exc)
        return out

    def _save_map(self, name: str, pred: Any) -> str:
        from fcam_deploy._io import atomic_path

        assert self._maps is not None
        rel = name + ".npy"
        with atomic_path(self._maps / rel) as tmp, tmp.open("wb") as f:
            np.save(f, np.ascontiguousarray(pred.map, dtype=np.float32), allow_pickle=False)
        return rel

    def __call__(self, batch: Mapping[str, Any]) -> Any:
        names = [str(n) for n in batch["image"]]
        errors = [str(e) for e in batch["error"]]
        pixels = batch["pixels"]
        ok = [i for i, e in enumerate(errors) if not e]
        preds = self._predict([np.asarray(pixels[i], dtype=np.uint8) for i in ok])
        rows: list[dict[str, Any] | None] = [None] * len(names)
        for i, e in enumerate(errors):
            if e:
                rows[i] = error_row(names[i], e, self._hash)
        for i, pred in zip(ok, preds, strict=True):
            if isinstance(pred, FcamError):
                rows[i] = error_row(names[i], f"{type(pred).__name__}: {pred}", self._hash)
            else:
                map_file = self._save_map(names[i], pred) if self._maps is not None else None
                rows[i] = prediction_row(names[i], pred, self._hash, map_file)
        return rows_to_table([r for r in rows if r is not None])


# ---------------------------------------------------------------------------------------------------------------
# Output: committed parts + the final sorted file


class ResultStore:
    """The output file and its ``<out>.partial/`` folder of committed parts (see the module docstring).

    A lock file in the parts folder (``flock``, released by the OS even on ``kill -9``) keeps two runs from
    writing the same output.
    """

    def __init__(self, out: Path, model_hash: str, commit_every: int = 256, commit_seconds: float = 30.0) -> None:
        self.out = Path(out)
        self.parts = self.out.with_name(self.out.name + ".partial")
        self._hash = model_hash
        self._every = int(commit_every)
        self._seconds = float(commit_seconds)
        self._pending: list[Any] = []
        self._pending_rows = 0
        self._last_commit = time.monotonic()
        self._seq = 0
        self._lock_fd: int | None = None

    # -- start ----------------------------------------------------------------------------------------------------

    def _lock(self) -> None:
        self.parts.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.parts / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            import fcntl
        except ImportError:  # Windows: no advisory lock
            self._lock_fd = fd
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise ConfigError(
                f"{self.out}: another fcam localize is writing this file (lock {self.parts / '.lock'} is held); "
                "fix: wait for it or choose another --out"
            ) from exc
        self._lock_fd = fd

    def _part_files(self) -> list[Path]:
        return sorted(self.parts.glob("part-*.parquet")) if self.parts.is_dir() else []

    def open(self, *, resume: bool, overwrite: bool, retry_errors: bool) -> dict[str, bool]:
        """Prepare the output; returns ``{image: has_error}`` for every image that already has a row.

        Raises:
            ConfigError: the output exists without ``resume``/``overwrite``, holds another model's rows, or is not
                an fcam localize file.
        """
        exists = self.out.exists() or self.parts.exists()
        if exists and not (resume or overwrite):
            raise ConfigError(
                f"{self.out} (or {self.parts.name}/) already exists; fix: --resume to continue it, --overwrite to "
                "replace it, or another --out"
            )
        if self.out.exists() and self.out.is_dir():
            raise ConfigError(f"{self.out} is a folder; --out takes a Parquet file path")
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self._lock()
        if overwrite:
            for p in [*self._part_files(), self.out]:
                p.unlink(missing_ok=True)
        for stale in self.parts.glob(".part-*.tmp"):  # a part being written when the last run died
            stale.unlink()
        for stale in self.out.parent.glob(f".{self.out.name}.*.tmp"):  # the final file, likewise
            stale.unlink()
        done: dict[str, bool] = {}
        sources = ([self.out] if self.out.exists() else []) + self._part_files()
        for src in sources:
            table = read_rows(src)
            hashes = set(table.column("model_sha256").to_pylist())
            if hashes - {self._hash}:
                raise ConfigError(
                    f"{src} holds rows of another model (sha256 {min(hashes - {self._hash})[:12]}..., this "
                    f"model is {self._hash[:12]}...); fix: resume with the same model, or --overwrite"
                )
            for name, err in zip(table.column("image").to_pylist(), table.column("error").to_pylist(), strict=True):
                done[name] = err is not None  # later sources (newer parts) override earlier ones
        parts = self._part_files()
        self._seq = 1 + max((int(p.stem.split("-")[1]) for p in parts), default=0)
        if retry_errors:
            done = {k: v for k, v in done.items() if not v}
        return done

    # -- during the run -------------------------------------------------------------------------------------------

    def add(self, table: Any) -> None:
        """Buffer rows; commit a part when ``commit_every`` rows or ``commit_seconds`` have accumulated."""
        if table.num_rows == 0:
            return
        self._pending.append(table.select(list(row_schema().names)).cast(row_schema()))
        self._pending_rows += table.num_rows
        if self._pending_rows >= self._every or time.monotonic() - self._last_commit >= self._seconds:
            self.commit()

    def commit(self) -> None:
        """Write the buffered rows as the next part file (atomically)."""
        pa = require("pyarrow", "fcam localize")
        pq = require("pyarrow.parquet", "fcam localize")
        self._last_commit = time.monotonic()
        if not self._pending:
            return
        table = pa.concat_tables(self._pending)
        with atomic_path(self.parts / f"part-{self._seq:06d}.parquet") as tmp:
            pq.write_table(table, tmp)
        self._seq += 1
        self._pending, self._pending_rows = [], 0

    # -- end ------------------------------------------------------------------------------------------------------

    def finish(self, listed: ImageSet) -> tuple[int, int]:
        """Merge ``out`` and the parts (a newer row of an image replaces an older one), keep the listed images,
        sort by image, write ``out`` atomically and remove the parts. Returns ``(error rows, rows dropped)``."""
        pa = require("pyarrow", "fcam localize")
        pc = require("pyarrow.compute", "fcam localize")
        pq = require("pyarrow.parquet", "fcam localize")
        self.commit()
        sources = ([self.out] if self.out.exists() else []) + self._part_files()
        schema = row_schema(self._hash)
        tables = [read_rows(s).replace_schema_metadata(None) for s in sources]
        table = pa.concat_tables(tables) if tables else row_schema().empty_table()
        if table.num_rows:
            order = pa.array(np.arange(table.num_rows, dtype=np.int64))
            last = table.append_column("__row", order).group_by("image").aggregate([("__row", "max")])
            table = table.take(last.column("__row_max"))
        keep = pc.is_in(table.column("image"), value_set=pa.array(list(listed.names), type=pa.string()))
        dropped = table.num_rows - int(pc.sum(keep).as_py() or 0)
        table = table.filter(keep).sort_by("image").combine_chunks()
        table = table.cast(schema)
        errors = table.num_rows - int(pc.sum(pc.is_null(table.column("error"))).as_py() or 0)
        with atomic_path(self.out) as tmp:
            pq.write_table(table, tmp, compression="zstd", row_group_size=65536)
        shutil.rmtree(self.parts, ignore_errors=True)
        self.close()
        return errors, dropped

    def close(self) -> None:
        """Release the lock; a parts folder holding no committed part (a run that stopped early) is removed."""
        if self._lock_fd is not None:
            if self.parts.is_dir() and not self._part_files():
                shutil.rmtree(self.parts, ignore_errors=True)
            os.close(self._lock_fd)
            self._lock_fd = None


# ---------------------------------------------------------------------------------------------------------------
# Engines


class _Layout(NamedTuple):
    actors: int
    threads: int
    decode: str


def _batches(todo: ImageSet, size: int) -> Iterator[dict[str, list[str]]]:
    for start in range(0, len(todo), size):
        yield {"image": list(todo.names[start : start + size]), "path": list(todo.paths[start : start + size])}


def _worker_kwargs(cfg: LocalizeConfig, model_hash: str, threads: int) -> dict[str, Any]:
    return {  # absolute paths: Ray workers may run in another folder or on another node
        "model": str(Path(cfg.model).resolve()),
        "model_hash": model_hash,
        "backend": cfg.backend,
        "device": cfg.device,
        "plugin_library": str(Path(cfg.plugin_library).resolve()) if cfg.plugin_library else None,
        "threads": threads,
        "max_boxes": cfg.max_boxes,
        "batch_size": cfg.batch_size,
        "save_maps": str(Path(cfg.save_maps).resolve()) if cfg.save_maps else None,
    }


def _run_local(cfg: LocalizeConfig, todo: ImageSet, store: ResultStore, bar: Any, model_hash: str) -> _Layout:
    cpus = usable_cpus()
    threads = cfg.threads or max(1, cpus - cfg.decode_workers)
    worker = LocalizeWorker(**_worker_kwargs(cfg, model_hash, threads))
    depth = cfg.decode_workers + 1  # decoded batches kept ready ahead of the Localizer
    with concurrent.futures.ThreadPoolExecutor(cfg.decode_workers, thread_name_prefix="fcam-decode") as pool:
        pending: deque[concurrent.futures.Future[dict[str, np.ndarray]]] = deque()
        batches = _batches(todo, cfg.batch_size)
        for batch in batches:
            pending.append(pool.submit(decode_batch, batch, cfg.max_pixels))
            if len(pending) >= depth:
                break
        while pending:
            decoded = pending.popleft().result()
            nxt = next(batches, None)
            if nxt is not None:
                pending.append(pool.submit(decode_batch, nxt, cfg.max_pixels))
            table = worker(decoded)
            store.add(table)
            bar.update(table.num_rows)
    return _Layout(1, threads, f"{cfg.decode_workers} thread(s)")


def _uses_gpu(device: str, backend: str) -> bool:
    return backend == "tensorrt" or str(device).startswith("cuda")


def _ray_layout(cfg: LocalizeConfig, cluster_cpus: float, cluster_gpus: float) -> tuple[int, int, bool]:
    """``(actors, threads, decode_in_actors)`` for the cluster; see :func:`localize`."""
    threads = cfg.threads or 1
    gpu = _uses_gpu(cfg.device, cfg.backend)
    fused = threads == 1 and not gpu  # Ray Data fuses the 1-CPU decode tasks into 1-CPU actors
    spare = 0 if fused else 1  # otherwise decode tasks need a CPU of their own
    if cfg.actors:
        actors = cfg.actors
    elif gpu:
        actors = max(1, int(cluster_gpus))
    else:
        actors = max(1, int((cluster_cpus - spare) // threads))
    need = actors * threads + spare
    if need > cluster_cpus + 1e-9:
        raise ConfigError(
            f"--actors {actors} x --threads {threads}"
            + (" + 1 CPU for the decode tasks" if spare else "")
            + f" = {need} CPUs, but the Ray cluster has {cluster_cpus:g}; fix: fewer actors or threads"
        )
    if gpu and actors > cluster_gpus + 1e-9:
        raise ConfigError(
            f"--actors {actors} GPU actors (one GPU each), but the Ray cluster has {cluster_gpus:g} GPU(s); "
            "fix: fewer actors"
        )
    return actors, threads, fused


@contextlib.contextmanager
def _ray_session(cfg: LocalizeConfig) -> Iterator[Any]:
    """Ray, initialised: the running session if there is one, else ``address`` or a new local cluster (shut down
    at the end)."""
    ray = require("ray", "fcam localize --engine ray")
    require("ray.data", "fcam localize --engine ray")
    if ray.is_initialized():
        yield ray
        return
    if cfg.address:
        ray.init(address=cfg.address, logging_level=logging.WARNING, log_to_driver=False)
    else:
        ray.init(
            address="local",
            num_cpus=cfg.num_cpus or usable_cpus(),
            include_dashboard=False,
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
    try:
        yield ray
    finally:
        ray.shutdown()


def _run_ray(cfg: LocalizeConfig, todo: ImageSet, store: ResultStore, bar: Any, model_hash: str) -> _Layout:
    with _ray_session(cfg) as ray:
        import ray.data as rd

        resources = ray.cluster_resources()
        actors, threads, fused = _ray_layout(cfg, float(resources.get("CPU", 0.0)), float(resources.get("GPU", 0.0)))
        rd.DataContext.get_current().enable_progress_bars = False
        items = [{"image": n, "path": p} for n, p in zip(todo.names, todo.paths, strict=True)]
        # a few batches per block: enough blocks for every worker, not so many that scheduling dominates
        blocks = max(4 * actors, math.ceil(len(items) / (4 * cfg.batch_size)))
        ds: Any = rd.from_items(items, override_num_blocks=min(len(items), blocks))
        ds = ds.map_batches(
            decode_batch,
            fn_kwargs={"max_pixels": cfg.max_pixels},
            batch_size=cfg.batch_size,
            batch_format="numpy",
            num_cpus=1,
        )
        ds = ds.map_batches(
            LocalizeWorker,
            fn_constructor_kwargs=_worker_kwargs(cfg, model_hash, threads),
            batch_size=cfg.batch_size,
            batch_format="numpy",
            compute=rd.ActorPoolStrategy(size=actors),
            num_cpus=threads,
            num_gpus=1 if _uses_gpu(cfg.device, cfg.backend) else 0,
        )
        for table in ds.iter_batches(batch_format="pyarrow", batch_size=None):
            store.add(table)
            bar.update(table.num_rows)
    return _Layout(actors, threads, "in the actors" if fused else "Ray Data tasks")


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, initial: int, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, initial=initial, unit="img", desc="localize", disable=None, dynamic_ncols=True)


def localize(cfg: LocalizeConfig) -> LocalizeSummary:
    """Run ``fcam localize`` (module docstring); returns what it did.

    Raises:
        ConfigError: bad options, an existing output without ``resume``/``overwrite``, another model's output.
        ModelFormatError, BackendUnavailableError: the model cannot be loaded (before any row is written).
    """
    t0 = time.perf_counter()
    listed = list_images(cfg.images)
    if cfg.save_maps is not None and not listed.all_relative():
        raise ConfigError(
            f"--save-maps writes <maps>/<image>.npy, but {cfg.images} lists images outside its folder; fix: list "
            "paths under the list's folder, or drop --save-maps"
        )
    model_hash = model_sha256(cfg.model)
    if cfg.engine == "ray":
        require("ray.data", "fcam localize --engine ray")
        if not _uses_gpu(cfg.device, cfg.backend):  # fail here, with the runtime's typed error, not in every actor
            from fcam_deploy.runtime import Localizer

            Localizer.load(
                cfg.model, backend=cfg.backend, device=cfg.device, plugin_library=cfg.plugin_library, threads=1
            ).close()
    require("pyarrow.parquet", "fcam localize")
    store = ResultStore(cfg.out, model_hash, commit_every=cfg.commit_every)
    try:
        done = store.open(resume=cfg.resume, overwrite=cfg.overwrite, retry_errors=cfg.retry_errors)
        todo = listed.select(set(listed.names) - set(done))
        skipped = len(listed) - len(todo)
        bar = _progress(len(listed), skipped, cfg.progress)
        try:
            if len(todo) == 0:
                layout = _Layout(0, 0, "nothing to do")
            elif cfg.engine == "local":
                layout = _run_local(cfg, todo, store, bar, model_hash)
            else:
                layout = _run_ray(cfg, todo, store, bar, model_hash)
        finally:
            bar.close()
        errors, dropped = store.finish(listed)
    finally:
        store.close()
    if dropped:
        log.warning("%s: dropped %d row(s) of images no longer in %s", cfg.out, dropped, cfg.images)
    seconds = time.perf_counter() - t0
    return LocalizeSummary(
        out=str(cfg.out),
        engine=cfg.engine,
        images=len(listed),
        localized=len(todo),
        skipped=skipped,
        errors=errors,
        dropped=dropped,
        seconds=round(seconds, 3),
        images_per_s=round(len(todo) / seconds, 2) if seconds > 0 else 0.0,
        model_sha256=model_hash,
        actors=layout.actors,
        threads=layout.threads,
        decode=layout.decode,
    )


def file_facts(path: str | Path) -> dict[str, Any]:
    """The JSON facts in a result file's key/value metadata (``schema_version``, ``model_sha256``)."""
    pq = require("pyarrow.parquet", "fcam localize")
    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(FILE_METADATA_KEY.encode())
    if raw is None:
        raise ConfigError(f"{path}: no {FILE_METADATA_KEY} metadata; not written by fcam localize")
    facts = json.loads(raw)
    if facts.get("schema_version") != SCHEMA_VERSION:
        raise ConfigError(f"{path}: row schema version {facts.get('schema_version')!r}, expected {SCHEMA_VERSION}")
    return dict(facts)
