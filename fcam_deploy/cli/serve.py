"""``fcam serve``: an HTTP localization endpoint on Ray Serve (``POST /predict``), until SIGINT / SIGTERM."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a model over HTTP on Ray Serve (POST /predict, dynamic batching, health/readiness)",
        description=(
            "Serve a model over HTTP on Ray Serve. POST /predict with a JPEG or PNG file as the body returns JSON "
            '{"class_index", "class_name", "score", "boxes", "tau", "size"} (?map=png adds the map as a base64 '
            "PNG); GET /healthz and GET /readyz report liveness and readiness. Bad requests get a 4xx JSON error. "
            "Requests are batched dynamically. Binds to 127.0.0.1 unless --host says otherwise. Prints one JSON "
            "line when ready; SIGINT / SIGTERM shut it down after the in-flight requests. Needs the scale extra: "
            'pip install "fcam-deploy[scale]".'
        ),
    )
    p.add_argument("--model", type=Path, required=True, help=".onnx, TensorRT .plan or checkpoint directory")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--replicas", type=int, default=1, help="Localizer replicas (default 1)")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads (= CPUs reserved) per replica")
    p.add_argument("--max-batch", type=int, default=8, help="most images per predict call (default 8)")
    p.add_argument(
        "--batch-wait-ms",
        type=float,
        default=5.0,
        help="how long a batch waits to fill after its first request (default 5 ms)",
    )
    p.add_argument("--max-body-mb", type=float, default=16.0, help="largest request body in MiB (default 16)")
    p.add_argument("--max-pixels", type=int, default=25_000_000, help="largest image, width x height (default 25e6)")
    p.add_argument("--max-ongoing", type=int, default=64, help="requests one replica holds at once (default 64)")
    p.add_argument(
        "--graceful-shutdown-s",
        type=float,
        default=20.0,
        help="how long shutdown waits for in-flight requests (default 20 s)",
    )
    p.add_argument("--backend", choices=("auto", "torch", "onnxruntime", "tensorrt"), default="auto")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--plugins", type=Path, default=None, help="custom-op / plugin library for custom-op graphs")
    p.add_argument("--max-boxes", type=int, default=8, help="boxes kept per image (default 8)")
    p.add_argument("--address", default=None, help="Ray cluster to join (default: start a local one)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray cluster (default: all)")
    p.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="port of Ray's Prometheus metrics endpoint (local cluster; default: Ray picks one)",
    )
    p.set_defaults(func=_run, needs_extra="scale")


def _run(args: argparse.Namespace) -> int:
    from fcam_deploy.errors import ConfigError
    from fcam_deploy.scale.serve import ServeConfig, serve_forever

    if not args.verbose:  # Ray's own INFO lines (execution plans, "Started Serve", ...) only with -v
        for name in ("ray", "ray.serve"):
            logging.getLogger(name).setLevel(logging.WARNING)

    if args.max_body_mb <= 0:
        raise ConfigError(f"--max-body-mb must be > 0; got {args.max_body_mb}")
    cfg = ServeConfig(
        model=args.model,
        host=args.host,
        port=args.port,
        replicas=args.replicas,
        threads=args.threads,
        max_batch=args.max_batch,
        batch_wait_ms=args.batch_wait_ms,
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        max_pixels=args.max_pixels,
        max_ongoing_requests=args.max_ongoing,
        graceful_shutdown_s=args.graceful_shutdown_s,
        backend=args.backend,
        device=args.device,
        plugin_library=args.plugins,
        max_boxes=args.max_boxes,
        address=args.address,
        num_cpus=args.num_cpus,
        metrics_port=args.metrics_port,
    )
    stop = threading.Event()
    previous: dict[int, Any] = {}

    def _on_signal(signum: int, frame: Any) -> None:
        stop.set()

    def _ready(server: Any) -> None:
        # installed once Ray runs: ray.init puts its own fatal-signal handler on SIGTERM, which this replaces
        for s in (signal.SIGINT, signal.SIGTERM):
            previous[s] = signal.signal(s, _on_signal)
        print(
            json.dumps(
                {
                    "url": server.url,
                    "routes": {
                        "predict": f"POST {server.url}/predict",
                        "health": f"GET {server.url}/healthz",
                        "ready": f"GET {server.url}/readyz",
                    },
                    "replicas": cfg.replicas,
                    "threads": cfg.threads,
                    "max_batch": cfg.max_batch,
                }
            ),
            flush=True,
        )

    try:
        serve_forever(cfg, stop, on_ready=_ready)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    print(json.dumps({"stopped": True}), flush=True)
    sys.stdout.flush()
    return 0
