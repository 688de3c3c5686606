"""``fcam serve``: a localization endpoint on Ray Serve.

Routes (JSON everywhere; see :data:`ROUTES`):

* ``POST /predict`` with the image file as the body (JPEG or PNG, recognised by its signature; a declared
  ``Content-Type`` must be one of :data:`ALLOWED_CONTENT_TYPES`) -> ``200 {"class_index", "class_name", "score", "boxes", "tau", "size"}``
  (``boxes``: ``[[x0, y0, x1, y1], ...]`` inclusive, original pixels, largest first; ``size``: ``[height,
  width]``). ``?map=png`` adds ``"map_png"``: the map at the original size as a base64 8-bit grayscale PNG
  (``round(map * 255)``).
* ``GET /healthz`` -> ``200 {"status": "ok"}`` while the replica can predict (liveness).
* ``GET /readyz`` -> ``200 {"ready": true, "model": {...}, "batching": {...}}`` once the model is loaded and
  warmed up (readiness: Serve routes no request to a replica before its constructor returned).
* Serve's own ``GET /-/healthz`` and ``GET /-/routes`` (proxy level) work as usual.

Bad requests get a JSON error ``{"error": {"status", "code", "message"}}`` and the server stays up: 400 empty,
corrupt or truncated body, unknown query parameter or value; 404 unknown route; 405 wrong method; 413 body above
``max_body_bytes`` or image above ``max_pixels``; 415 a body that is not JPEG or PNG (by its signature), or
another declared ``Content-Type``; 500 only for a failure of the model itself.

Requests are batched dynamically with ``serve.batch`` (``max_batch`` images or ``batch_wait_ms``, whichever comes
first) and run in one ``Localizer.predict`` call per batch on a worker thread, so the replica keeps decoding and
queueing while a batch runs; the ``X-Fcam-Batch`` response header says how many images that call held. Each replica holds one Localizer with ``threads`` ONNX Runtime threads and reserves
that many CPUs. Metrics (Ray's, exported by Ray's metrics agent in Prometheus format): Serve's request counters and
latency histograms, plus ``ray_fcam_requests_total`` (by route and status) and ``ray_fcam_batch_size``.

Shutdown is graceful: ``serve.delete`` lets every replica finish its in-flight requests (up to
``graceful_shutdown_s``) before Serve and Ray stop. The HTTP proxy binds to ``host`` (default ``127.0.0.1``).
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import io
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fcam_deploy.errors import ConfigError, FcamError, ImageError
from fcam_deploy.scale._deps import require

__all__ = [
    "ALLOWED_CONTENT_TYPES",
    "APP_NAME",
    "ROUTES",
    "HttpError",
    "LocalizerEndpoint",
    "RunningServer",
    "ServeConfig",
    "build_app",
    "check_request",
    "decode_body",
    "prediction_json",
    "serve_forever",
    "start_server",
]

log = logging.getLogger(__name__)

#: Serve application name.
APP_NAME = "fcam"
#: ``path -> allowed method`` of the endpoint.
ROUTES: dict[str, str] = {"/predict": "POST", "/healthz": "GET", "/readyz": "GET"}
#: Declared body types accepted by ``POST /predict`` (or no header). The body's own signature decides whether it
#: is JPEG or PNG; ``application/x-www-form-urlencoded`` is what ``curl --data-binary @file`` declares by default.
ALLOWED_CONTENT_TYPES: frozenset[str] = frozenset(
    {
        "image/jpeg",
        "image/jpg",
        "image/pjpeg",
        "image/png",
        "application/octet-stream",
        "application/x-www-form-urlencoded",
    }
)
_SIGNATURES: tuple[tuple[bytes, str], ...] = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"))


@dataclass(frozen=True)
class ServeConfig:
    """What ``fcam serve`` runs (one field per command-line option).

    Attributes:
        model: an ``.onnx``, a TensorRT ``.plan`` or a checkpoint directory.
        host: address the HTTP proxy binds to (``127.0.0.1``: this machine only).
        port: its port.
        replicas: Localizer replicas (each a Ray actor reserving ``threads`` CPUs, or one GPU).
        threads: ONNX Runtime threads per replica.
        max_batch: most images per ``predict`` call.
        batch_wait_ms: how long a batch waits to fill up after its first request.
        max_body_bytes: largest accepted body (bigger: 413 before it is decoded).
        max_pixels: largest accepted image, width x height (bigger: 413, checked from the header).
        max_ongoing_requests: requests a replica holds at once (queued beyond that by Serve).
        graceful_shutdown_s: how long shutdown waits for in-flight requests.
        backend, device, plugin_library, max_boxes: passed to ``Localizer.load``.
        address: Ray cluster to join (default: start a local one, stopped at the end).
        num_cpus: CPUs of the local Ray cluster (default: this machine's).
        metrics_port: port of Ray's Prometheus metrics endpoint on a local cluster (default: Ray picks one).
    """

    model: Path
    host: str = "127.0.0.1"
    port: int = 8000
    replicas: int = 1
    threads: int = 1
    max_batch: int = 8
    batch_wait_ms: float = 5.0
    max_body_bytes: int = 16 * 1024 * 1024
    max_pixels: int = 25_000_000
    max_ongoing_requests: int = 64
    graceful_shutdown_s: float = 20.0
    backend: str = "auto"
    device: str = "cpu"
    plugin_library: Path | None = None
    max_boxes: int = 8
    address: str | None = None
    num_cpus: int | None = None
    metrics_port: int | None = None

    def __post_init__(self) -> None:
        for name in (
            "replicas",
            "threads",
            "max_batch",
            "max_body_bytes",
            "max_pixels",
            "max_ongoing_requests",
            "max_boxes",
        ):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be an integer >= 1; got {v!r}")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be in 0..65535; got {self.port}")
        if not 0.0 <= self.batch_wait_ms <= 10_000:
            raise ConfigError(f"batch_wait_ms must be in [0, 10000]; got {self.batch_wait_ms}")
        if self.graceful_shutdown_s < 0:
            raise ConfigError(f"graceful_shutdown_s must be >= 0; got {self.graceful_shutdown_s}")
        if self.address is not None and (self.num_cpus is not None or self.metrics_port is not None):
            raise ConfigError("--num-cpus and --metrics-port configure a local Ray cluster; not with --address")

    @property
    def uses_gpu(self) -> bool:
        return self.backend == "tensorrt" or str(self.device).startswith("cuda")

    def to_dict(self) -> dict[str, Any]:
        """Plain values for the replicas (paths made absolute: workers may run elsewhere)."""
        d = asdict(self)
        d["model"] = str(Path(self.model).resolve())
        d["plugin_library"] = str(Path(self.plugin_library).resolve()) if self.plugin_library else None
        return d


# ---------------------------------------------------------------------------------------------------------------
# Request checks (pure functions: no Ray, no HTTP framework)


class HttpError(Exception):
    """A request the endpoint refuses: HTTP ``status``, a short machine ``code`` and a message naming the fix."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = int(status)
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": {"status": self.status, "code": self.code, "message": self.message}}


def check_request(body: bytes, content_type: str | None, query: Mapping[str, str], max_body_bytes: int) -> bool:
    """Validate a ``POST /predict`` request before decoding; returns whether the map was asked for.

    Raises:
        HttpError: 400 (empty body, bad query), 413 (body too large), 415 (not JPEG / PNG).
    """
    unknown = sorted(set(query) - {"map"})
    if unknown:
        raise HttpError(400, "bad_query", f"unknown query parameter(s) {unknown}; the only one is map=png")
    want_map = False
    if "map" in query:
        if query["map"] != "png":
            raise HttpError(400, "bad_query", f"map={query['map']!r} is not supported; use map=png")
        want_map = True
    declared = (content_type or "").split(";")[0].strip().lower()
    if declared and declared not in ALLOWED_CONTENT_TYPES:
        raise HttpError(
            415,
            "unsupported_media_type",
            f"Content-Type {declared!r} is not accepted; send the JPEG or PNG file as the body with Content-Type "
            "image/jpeg, image/png or application/octet-stream",
        )
    if len(body) > max_body_bytes:
        raise HttpError(413, "body_too_large", f"body of {len(body)} bytes exceeds the limit of {max_body_bytes}")
    if not body:
        raise HttpError(400, "empty_body", "empty body; send the image file (JPEG or PNG) as the request body")
    if not any(body.startswith(sig) for sig, _ in _SIGNATURES):
        raise HttpError(
            415,
            "unsupported_media_type",
            "the body is neither a JPEG nor a PNG file (by its signature); send the image file itself, not a "
            "form or base64 text",
        )
    return want_map


def decode_body(body: bytes, max_pixels: int) -> np.ndarray:
    """Decode a checked body to uint8 (h, w, 3) RGB with the safe loader.

    Raises:
        HttpError: 413 (more pixels than ``max_pixels``), 400 (corrupt or truncated).
    """
    from fcam_deploy.data.images import decode_image_rgb

    try:
        image = decode_image_rgb(body, name="request body", max_pixels=max_pixels)
    except ImageError as exc:
        text = str(exc)
        if "exceeds the limit" in text or "decompression bomb" in text:
            raise HttpError(413, "image_too_large", text) from exc
        raise HttpError(400, "bad_image", text) from exc
    return np.asarray(image, dtype=np.uint8)


def _map_png(prob: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.round(np.clip(prob, 0.0, 1.0) * 255.0).astype(np.uint8), mode="L").save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def prediction_json(pred: Any, want_map: bool = False) -> dict[str, Any]:
    """The response body of one :class:`fcam_deploy.runtime.Prediction`."""
    out: dict[str, Any] = {
        "class_index": int(pred.class_index),
        "class_name": str(pred.class_name),
        "score": float(pred.score),
        "boxes": [[int(v) for v in b] for b in pred.boxes],
        "tau": float(pred.tau),
        "size": [int(pred.size[0]), int(pred.size[1])],
    }
    if want_map:
        out["map_png"] = _map_png(pred.map)
    return out


# ---------------------------------------------------------------------------------------------------------------
# The deployment (one instance per replica, inside a Ray actor)


class LocalizerEndpoint:
    """The Serve deployment class: one Localizer, the routes of the module docstring, dynamic batching."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        from ray import serve
        from ray.util import metrics

        from fcam_deploy.runtime import Localizer

        cfg = dict(config)
        self._cfg = ServeConfig(
            **{
                **cfg,
                "model": Path(cfg["model"]),
                "plugin_library": Path(cfg["plugin_library"]) if cfg["plugin_library"] else None,
            }
        )
        c = self._cfg
        self._loc = Localizer.load(
            c.model,
            backend=c.backend,
            device=c.device,
            plugin_library=c.plugin_library,
            max_boxes=c.max_boxes,
            batch_size=c.max_batch,
            threads=c.threads,
        )
        h, w = self._loc.metadata.input_size
        self._loc.predict(np.zeros((h, w, 3), dtype=np.uint8))  # warm up: a broken model fails here, not later
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="fcam-predict")
        self._batched = serve.batch(max_batch_size=c.max_batch, batch_wait_timeout_s=c.batch_wait_ms / 1000.0)(
            self._predict_many
        )
        self._requests = metrics.Counter(
            "fcam_requests", description="fcam serve requests by route and HTTP status", tag_keys=("route", "status")
        )
        self._batch_sizes = metrics.Histogram(
            "fcam_batch_size", description="images per predict call", boundaries=[1, 2, 4, 8, 16, 32, 64]
        )

    def _predict_sync(self, images: list[np.ndarray]) -> list[tuple[Any, int]]:
        """``(prediction or the FcamError of that image, images in the predict call)`` per image."""
        n = len(images)
        self._batch_sizes.observe(n)
        try:
            return [(p, n) for p in self._loc.predict(images)]
        except FcamError:
            pass
        out: list[tuple[Any, int]] = []
        for img in images:  # isolate the request the batch failed on
            try:
                out.append((self._loc.predict(img), 1))
            except FcamError as exc:
                out.append((exc, 1))
        return out

    async def _predict_many(self, images: list[np.ndarray]) -> list[tuple[Any, int]]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._predict_sync, images)

    def _readiness(self) -> dict[str, Any]:
        meta = self._loc.metadata
        return {
            "ready": True,
            "model": {
                "path": str(self._cfg.model),
                "backend": self._loc.backend,
                "providers": list(self._loc.providers),
                "method": meta.method,
                "input_size": list(meta.input_size),
                "class_names": list(meta.class_names),
                "tau": meta.tau,
            },
            "batching": {"max_batch": self._cfg.max_batch, "batch_wait_ms": self._cfg.batch_wait_ms},
            "limits": {"max_body_bytes": self._cfg.max_body_bytes, "max_pixels": self._cfg.max_pixels},
        }

    async def _handle(self, request: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
        path = request.url.path.rstrip("/") or "/"
        method = ROUTES.get(path)
        if method is None:
            raise HttpError(
                404, "not_found", f"no route {path!r}; routes: " + ", ".join(f"{m} {p}" for p, m in ROUTES.items())
            )
        if request.method != method:
            raise HttpError(405, "method_not_allowed", f"{path} takes {method}, not {request.method}")
        if path == "/healthz":
            return 200, {"status": "ok"}, {}
        if path == "/readyz":
            return 200, self._readiness(), {}
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._cfg.max_body_bytes:
            raise HttpError(
                413, "body_too_large", f"body of {declared} bytes exceeds the limit of {self._cfg.max_body_bytes}"
            )
        body = await self._read_body(request)
        want_map = check_request(
            body, request.headers.get("content-type"), dict(request.query_params), self._cfg.max_body_bytes
        )
        image = await asyncio.to_thread(decode_body, body, self._cfg.max_pixels)
        pred, batch = await self._batched(image)
        if isinstance(pred, FcamError):
            raise HttpError(400, "bad_image", f"{type(pred).__name__}: {pred}")
        return 200, await asyncio.to_thread(prediction_json, pred, want_map), {"X-Fcam-Batch": str(batch)}

    async def _read_body(self, request: Any) -> bytes:
        """The body, read in chunks; stops with 413 as soon as it passes the limit (chunked uploads too)."""
        limit = self._cfg.max_body_bytes
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HttpError(413, "body_too_large", f"body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def __call__(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        route = request.url.path if request.url.path in ROUTES else "other"
        try:
            status, body, headers = await self._handle(request)
        except HttpError as exc:
            status, body, headers = exc.status, exc.body(), {}
            if exc.status == 405:
                headers = {"Allow": ROUTES.get(request.url.path.rstrip("/"), "")}
        except Exception as exc:  # the model itself failed: 500, logged with its traceback; the replica stays up
            log.exception("fcam serve: predict failed")
            status = 500
            body = HttpError(500, "internal", f"{type(exc).__name__}: {exc}").body()
            headers = {}
        self._requests.inc(tags={"route": route, "status": str(status)})
        return JSONResponse(body, status_code=status, headers=headers)

    async def check_health(self) -> None:
        """Serve's periodic replica check: the predict thread must take work within 20 s (a wedged batch fails it
        and Serve replaces the replica)."""
        loop = asyncio.get_running_loop()
        await asyncio.wait_for(loop.run_in_executor(self._pool, lambda: None), timeout=20.0)


def build_app(config: ServeConfig) -> Any:
    """The Serve application (``serve.run`` it) for ``config``."""
    serve = require("ray.serve", "fcam serve")
    gpu = config.uses_gpu
    deployment = serve.deployment(
        LocalizerEndpoint,
        name="LocalizerEndpoint",
        num_replicas=config.replicas,
        ray_actor_options={"num_cpus": config.threads, "num_gpus": 1 if gpu else 0},
        max_ongoing_requests=config.max_ongoing_requests,
        graceful_shutdown_timeout_s=config.graceful_shutdown_s,
        graceful_shutdown_wait_loop_s=0.5,
        health_check_period_s=10.0,
        max_constructor_retry_count=2,
    )
    return deployment.bind(config.to_dict())


# ---------------------------------------------------------------------------------------------------------------
# Running it


class RunningServer:
    """A started endpoint; :meth:`stop` shuts it down gracefully.

    ``stop`` deletes the application (its replicas finish their in-flight requests first), then stops Serve if
    this server started it, then disconnects from (or, for a local cluster it started, stops) Ray.
    """

    def __init__(self, config: ServeConfig, url: str, owns_ray: bool, owns_serve: bool) -> None:
        self.config = config
        self.url = url
        self._owns_ray = owns_ray
        self._owns_serve = owns_serve
        self._stopped = False

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        import ray
        from ray import serve

        try:
            serve.delete(APP_NAME, _blocking=True)
            if self._owns_serve:
                serve.shutdown()
        finally:
            if self._owns_ray:
                ray.shutdown()


def _serve_running(ray: Any) -> bool:
    """Whether a Serve controller already runs on the connected cluster."""
    from ray.util import list_named_actors

    return any(
        a.get("namespace") == "serve" and "CONTROLLER" in a.get("name", "")
        for a in list_named_actors(all_namespaces=True)
    )


def start_server(config: ServeConfig) -> RunningServer:
    """Start Ray (or use the running session / ``address``), Serve's HTTP proxy on ``host:port``, and the app;
    returns once every replica is up (model loaded and warmed up).

    Raises:
        MissingExtraError: Ray Serve (the scale extra) is not installed.
        ConfigError: the port is in use, the replicas do not fit the cluster, or Serve already runs on the
            cluster with another host / port.
        ModelFormatError: the model file does not exist.
    """
    from fcam_deploy.errors import BackendUnavailableError

    ray = require("ray", "fcam serve")
    serve = require("ray.serve", "fcam serve")
    if not config.uses_gpu:  # fail here, with the runtime's typed error, rather than in every replica
        from fcam_deploy.runtime import Localizer

        Localizer.load(
            config.model, backend=config.backend, device=config.device, plugin_library=config.plugin_library, threads=1
        ).close()
    owns_ray = False
    if not ray.is_initialized():
        if config.address:
            ray.init(address=config.address, logging_level=logging.WARNING)
        else:
            kwargs: dict[str, Any] = {}
            if config.metrics_port is not None:
                kwargs["_metrics_export_port"] = config.metrics_port
            from fcam_deploy.scale.localize import usable_cpus

            ray.init(
                address="local",
                num_cpus=config.num_cpus or usable_cpus(),
                include_dashboard=False,
                logging_level=logging.WARNING,
                **kwargs,
            )
        owns_ray = True
    owns_serve = False
    try:
        resources = ray.cluster_resources()
        gpu = config.uses_gpu
        cpus, gpus = float(resources.get("CPU", 0.0)), float(resources.get("GPU", 0.0))
        if config.replicas * config.threads > cpus + 1e-9 or (gpu and config.replicas > gpus + 1e-9):
            raise ConfigError(
                f"--replicas {config.replicas} x --threads {config.threads} CPUs"
                + (f" (and {config.replicas} GPUs)" if gpu else "")
                + f" do not fit the Ray cluster ({cpus:g} CPUs, {gpus:g} GPUs); Serve would wait forever. "
                "fix: fewer replicas or threads"
            )
        if _serve_running(ray):
            raise ConfigError(
                "Ray Serve already runs on this cluster (with its own HTTP host and port, which fcam serve cannot "
                "change); fix: serve on a cluster without Serve, or shut it down with `serve shutdown`"
            )
        _check_port_free(config.host, config.port)
        serve.start(http_options={"host": config.host, "port": config.port}, logging_config=_QUIET)
        owns_serve = True
        try:
            serve.run(build_app(config), name=APP_NAME, route_prefix="/", blocking=False, logging_config=_QUIET)
        except RuntimeError as exc:  # Serve reports a replica that failed to start as a plain RuntimeError
            raise BackendUnavailableError(
                f"Ray Serve could not start the replicas ({exc}); the replica's own error is in the log above and "
                "in Ray's logs (/tmp/ray/session_latest/logs/serve/)"
            ) from exc
    except BaseException:
        if owns_serve:
            serve.shutdown()
        if owns_ray:
            ray.shutdown()
        raise
    host = f"[{config.host}]" if ":" in config.host else config.host
    return RunningServer(config, f"http://{host}:{config.port}", owns_ray, owns_serve)


#: Serve logging: warnings and errors only, no per-request access log (the metrics count requests).
_QUIET = {"log_level": "WARNING", "enable_access_log": False}


def _check_port_free(host: str, port: int) -> None:
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port} ({exc}); fix: choose another --port or --host") from exc


def serve_forever(config: ServeConfig, stop: threading.Event, on_ready: Any = None) -> None:
    """Run the endpoint until ``stop`` is set (the CLI sets it on SIGINT / SIGTERM), then shut down gracefully.

    Args:
        config: what to serve.
        stop: set it to stop.
        on_ready: called with the :class:`RunningServer` once it answers.
    """
    server = start_server(config)
    try:
        if on_ready is not None:
            on_ready(server)
        while not stop.wait(0.5):
            pass
    finally:
        t0 = time.monotonic()
        server.stop()
        log.info("fcam serve: stopped in %.1f s", time.monotonic() - t0)
