"""fcam_deploy.train: stage 1 (CAM classifier) and stage 2 (F-CAM) training.

Public API: :func:`train_classifier`, :func:`train_fcam`, :func:`load_train_config` (typed configs from
``configs/{classifier,fcam}/*.json``), the loss pieces :func:`sample_seeds`, :func:`dense_crf_loss` (on the
native :func:`lattice_filter`), :func:`size_loss`, :func:`elb_penalty`, :func:`fcam_loss`, and the DDP helper
:class:`CPUSyncBatchNorm`.
Submodules are imported lazily (no work at import time).
"""

from __future__ import annotations

from fcam_deploy._lazy import lazy_exports

_EXPORTS = {
    "train_classifier": "engine",
    "train_fcam": "engine",
    "TrainResult": "engine",
    "normalize_cam": "engine",
    "predict_maps": "engine",
    "load_train_config": "config",
    "ClassifierTrainConfig": "config",
    "FCAMTrainConfig": "config",
    "OptimConfig": "config",
    "available_configs": "config",
    "config_to_dict": "config",
    "SeedConfig": "seeds",
    "sample_seeds": "seeds",
    "IGNORE_INDEX": "seeds",
    "CRFConfig": "crf",
    "dense_crf_loss": "crf",
    "exact_crf_value_and_grad": "crf",
    "lattice_filter": "crf",
    "ELBConfig": "elb",
    "ELBState": "elb",
    "elb_penalty": "elb",
    "size_loss": "elb",
    "fcam_loss": "losses",
    "seed_cross_entropy": "losses",
    "CPUSyncBatchNorm": "distributed",
    "convert_sync_batchnorm": "distributed",
}

__all__ = [
    "IGNORE_INDEX",
    "CPUSyncBatchNorm",
    "CRFConfig",
    "ClassifierTrainConfig",
    "ELBConfig",
    "ELBState",
    "FCAMTrainConfig",
    "OptimConfig",
    "SeedConfig",
    "TrainResult",
    "available_configs",
    "config_to_dict",
    "convert_sync_batchnorm",
    "dense_crf_loss",
    "elb_penalty",
    "exact_crf_value_and_grad",
    "fcam_loss",
    "lattice_filter",
    "load_train_config",
    "normalize_cam",
    "predict_maps",
    "sample_seeds",
    "seed_cross_entropy",
    "size_loss",
    "train_classifier",
    "train_fcam",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
