"""Beyond one process: dataset-scale localization on Ray Data and an online endpoint on Ray Serve.

* :func:`localize` / :class:`LocalizeConfig` -- ``fcam localize``: every image of a folder or list -> one Parquet
  row each (class, score, boxes in original pixels, tau, model hash, or the error), on the ``local`` engine (this
  process) or the ``ray`` engine (Ray Data decodes in parallel, a pool of Localizer actors predicts); resumable.
* :func:`list_images` -- the image set of a folder or a list file.
* :func:`serve_forever` / :func:`build_app` / :class:`ServeConfig` -- ``fcam serve``: ``POST /predict`` on Ray
  Serve with dynamic batching, health and readiness routes, typed 4xx errors.

Everything here builds on the public runtime API only (``Localizer.load`` / ``predict``) and never imports torch.
Ray and pyarrow come with the ``scale`` extra (``pip install "fcam-deploy[scale]"``); they are imported when a
function needs them, never at package import.
"""

from __future__ import annotations

from fcam_deploy._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "SCALE_EXTRA_HINT": "_deps",
    "ImageSet": "images",
    "list_images": "images",
    "row_schema": "rows",
    "model_sha256": "rows",
    "read_rows": "rows",
    "LocalizeConfig": "localize",
    "LocalizeSummary": "localize",
    "localize": "localize",
    "ServeConfig": "serve",
    "build_app": "serve",
    "serve_forever": "serve",
}

__all__ = [
    "SCALE_EXTRA_HINT",
    "ImageSet",
    "LocalizeConfig",
    "LocalizeSummary",
    "ServeConfig",
    "build_app",
    "list_images",
    "localize",
    "model_sha256",
    "read_rows",
    "row_schema",
    "serve_forever",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
