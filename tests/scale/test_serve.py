"""``fcam serve``: request checks (no Ray), the endpoint on the session's Ray cluster against in-process
``Localizer.predict`` with a bounded set of good and bad requests, and the CLI's graceful shutdown on SIGTERM.

Every server binds to 127.0.0.1 on a free port; every request loop is bounded in count and time."""

from __future__ import annotations

import base64
import concurrent.futures
import io
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from fcam_deploy.scale.serve import HttpError, ServeConfig, check_request, decode_body, prediction_json
from tests.scale._scale_helpers import free_port, request

PNG_SIG = b"\x89PNG\r\n\x1a\n"
# Ray Data / Serve / pydantic deprecations inside Ray itself, not in this project's code
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray", "ignore::DeprecationWarning:pydantic")


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _status(fn: Any, *args: Any) -> int:
    try:
        fn(*args)
    except HttpError as exc:
        return exc.status
    return 200


def test_request_checks_without_ray(tiny_onnx: Path, image_dir: Path, reference: dict) -> None:
    png = (image_dir / "extra" / "e00.png").read_bytes()
    jpg = (image_dir / "extra" / "e01.jpg").read_bytes()
    assert check_request(png, "image/png", {}, 10_000) is False
    assert check_request(jpg, None, {"map": "png"}, 10_000) is True
    assert check_request(jpg, "application/x-www-form-urlencoded", {}, 10_000) is False  # curl --data-binary
    cases = [
        ((b"", "image/png", {}, 100), 400),
        ((png, "image/png", {"map": "jpg"}, 10_000), 400),
        ((png, "image/png", {"maps": "png"}, 10_000), 400),
        ((png, "image/png", {}, len(png) - 1), 413),
        ((b"GIF89a" + b"\0" * 20, None, {}, 100), 415),
        ((png, "text/plain", {}, 10_000), 415),
        ((png, "multipart/form-data; boundary=x", {}, 10_000), 415),
    ]
    for args, status in cases:
        assert _status(check_request, *args) == status, args
    assert decode_body(png, 10_000).shape == (30, 50, 3)
    assert _status(decode_body, png[: len(png) // 2], 10_000) == 400  # truncated
    assert _status(decode_body, PNG_SIG + b"\0" * 40, 10_000) == 400  # corrupt
    assert _status(decode_body, png, 30 * 50 - 1) == 413  # too many pixels (header check)

    from fcam_deploy.data import load_image_rgb
    from fcam_deploy.runtime import Localizer

    # the response body of a prediction, map included
    with Localizer.load(tiny_onnx, threads=1) as loc:
        pred = loc.predict(load_image_rgb(image_dir / "extra" / "e00.png"))
    body = prediction_json(pred, want_map=True)
    assert set(body) == {"class_index", "class_name", "score", "boxes", "tau", "size", "map_png"}
    assert body["size"] == [30, 50] and body["boxes"] == reference["extra/e00.png"]["boxes"]
    got = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["map_png"]))))
    np.testing.assert_array_equal(got, np.round(reference["extra/e00.png"]["map"] * 255.0).astype(np.uint8))


def _check_prediction(body: dict[str, Any], ref: dict[str, Any]) -> None:
    assert body["class_index"] == ref["class_index"] and body["class_name"] == ref["class_name"]
    assert body["score"] == ref["score"]  # exact: the same runtime, whatever the batch
    assert body["boxes"] == ref["boxes"] and body["tau"] == ref["tau"]
    assert body["size"] == [ref["height"], ref["width"]]


def _port_closed(port: int, within_s: float = 30.0) -> bool:
    import socket

    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(1.0)
            if s.connect_ex(("127.0.0.1", port)) != 0:
                return True
        time.sleep(0.2)
    return False


def test_endpoint_answers_good_and_bad_requests(
    ray_cluster: Any, tiny_onnx: Path, image_dir: Path, reference: dict
) -> None:
    from fcam_deploy.scale.serve import start_server

    port = free_port()
    server = start_server(
        ServeConfig(
            model=tiny_onnx, port=port, max_batch=4, batch_wait_ms=50, max_body_bytes=300_000, max_pixels=20_000
        )
    )
    try:
        assert server.url == f"http://127.0.0.1:{port}"
        st, body, _ = request(port, "GET", "/readyz")
        assert st == 200 and body["ready"] and body["model"]["class_names"] == ["dot", "ring", "bar_across"]
        assert body["batching"] == {"max_batch": 4, "batch_wait_ms": 50.0}
        assert request(port, "GET", "/healthz")[:2] == (200, {"status": "ok"})

        # good requests, 8 at a time: each equals the in-process prediction; some shared a predict call
        names = [n for n in sorted(reference) if not reference[n]["error"]][::14][:20]
        ctype = {".png": "image/png", ".jpg": "image/jpeg"}

        def one(name: str) -> tuple[str, int, dict[str, Any], dict[str, str]]:
            data = (image_dir / name).read_bytes()
            st, body, headers = request(
                port, "POST", "/predict", data, {"Content-Type": ctype.get(Path(name).suffix.lower(), "image/png")}
            )
            return name, st, body, headers

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(one, names, timeout=120))
        batches = []
        for name, st, body, headers in results:
            assert st == 200, (name, body)
            _check_prediction(body, reference[name])
            batches.append(int(headers["x-fcam-batch"]))
        assert max(batches) > 1 and max(batches) <= 4, batches  # dynamic batching, capped at max_batch

        # ?map=png: the map at the original size as an 8-bit PNG
        st, body, _ = request(port, "POST", "/predict?map=png", (image_dir / "extra" / "e02.png").read_bytes())
        assert st == 200
        got = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["map_png"]))))
        np.testing.assert_array_equal(got, np.round(reference["extra/e02.png"]["map"] * 255.0).astype(np.uint8))

        # bad requests: a JSON 4xx each, the server stays up
        png = (image_dir / "extra" / "e00.png").read_bytes()
        big = _png(np.zeros((200, 200, 3), np.uint8))  # 40 000 pixels > max_pixels
        bad = [
            ("POST", "/predict", b"", {}, 400, "empty_body"),
            ("POST", "/predict", PNG_SIG + b"\0" * 64, {}, 400, "bad_image"),
            ("POST", "/predict", png[: len(png) // 2], {"Content-Type": "image/png"}, 400, "bad_image"),
            ("POST", "/predict", (image_dir / "bad" / "truncated.jpg").read_bytes(), {}, 400, "bad_image"),
            ("POST", "/predict", b"GIF89a" + b"\0" * 64, {}, 415, "unsupported_media_type"),
            ("POST", "/predict", png, {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
            ("POST", "/predict", PNG_SIG + b"\0" * 310_000, {}, 413, "body_too_large"),
            ("POST", "/predict", big, {}, 413, "image_too_large"),
            ("POST", "/predict?map=svg", png, {}, 400, "bad_query"),
            ("GET", "/predict", None, {}, 405, "method_not_allowed"),
            ("POST", "/nope", png, {}, 404, "not_found"),
        ]
        for method, path, data, headers, status, code in bad:
            st, body, hdrs = request(port, method, path, data, headers)
            assert (st, body["error"]["code"]) == (status, code), (path, body)
            assert body["error"]["status"] == status and body["error"]["message"]
            if status == 405:
                assert hdrs["allow"] == "POST"
        st, body, _ = request(port, "POST", "/predict", png)
        assert st == 200
        _check_prediction(body, reference["extra/e00.png"])
    finally:
        server.stop()
    assert _port_closed(port), "the HTTP proxy still listens after stop()"


def _reader(stream: Any, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def test_cli_serve_shuts_down_gracefully(
    ray_cluster: Any, tiny_onnx: Path, image_dir: Path, reference: dict, tmp_path: Path
) -> None:
    """``fcam serve`` on a free loopback port (joining the session cluster): bounded good and bad requests, then
    SIGTERM while requests are in flight: they complete with 200 and the process exits 0."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    address = ray_cluster.get_runtime_context().gcs_address
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fcam_deploy",
            "serve",
            "--model",
            str(tiny_onnx),
            "--port",
            str(port),
            "--address",
            address,
            "--max-batch",
            "4",
            "--batch-wait-ms",
            "400",
        ],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env=env,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True).start()
    try:
        ready = None
        deadline = time.monotonic() + 240
        while ready is None and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            if line.startswith("{") and '"url"' in line:
                ready = json.loads(line)
        assert ready is not None, "no ready line: " + (tmp_path / "serve.log").read_text()[-3000:]
        assert ready["url"] == f"http://127.0.0.1:{port}"

        png = (image_dir / "extra" / "e00.png").read_bytes()
        st, body, _ = request(port, "POST", "/predict", png, {"Content-Type": "image/png"})
        assert st == 200
        _check_prediction(body, reference["extra/e00.png"])
        assert request(port, "POST", "/predict", b"not an image")[0] == 415
        assert request(port, "GET", "/readyz")[0] == 200

        # three requests in flight (each waits up to 400 ms for its batch to fill), then SIGTERM
        names = ["extra/e04.png", "extra/e08.png", "synth/000010.png"]
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            futures = [pool.submit(request, port, "POST", "/predict", (image_dir / n).read_bytes()) for n in names]
            time.sleep(0.15)
            proc.send_signal(signal.SIGTERM)
            for name, fut in zip(names, futures, strict=True):
                st, body, _ = fut.result(timeout=120)
                assert st == 200, body
                _check_prediction(body, reference[name])
        assert proc.wait(timeout=120) == 0
        rest = []
        while True:
            item = lines.get(timeout=10)
            if item is None:
                break
            rest.append(item)
        assert any(json.loads(x) == {"stopped": True} for x in rest if x.startswith("{")), rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        log.close()
    assert _port_closed(port)
