"""DistributedDataParallel on CPU (gloo, 2 processes, init_method file://) vs 1 process, same global batch.

Both stages are run through the real training entry points. Trainable BatchNorms become
:class:`CPUSyncBatchNorm` under DDP, so the only differences are floating-point summation order (all-reduce of
gradients and BN statistics): parameters after the run agree within 2e-4 absolute (float32, a few SGD steps;
stage 1 trains every BN of the trunk, stage 2 the decoder BNs).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file

from fcam_deploy.train import load_train_config

TOL = 2e-4


def _cfgs():  # type: ignore[no-untyped-def]
    c = load_train_config("classifier", "demo", {"arch": "efficientnet_lite0_s8", "input_size": 32,
                                                 "resize_size": 36, "epochs": 1, "batch_size": 8,
                                                 "optim": {"lr": 0.002}})
    f = load_train_config("fcam", "demo", {"epochs": 1, "batch_size": 8, "resize_size": 36,
                                           "crf": {"grid": 8, "lam": 2e-7}})
    return c, f


def _worker(rank: int, world: int, init: str, data: str, out: str) -> None:
    torch.set_num_threads(1)
    from fcam_deploy.train import train_classifier, train_fcam
    from fcam_deploy.train.distributed import init_distributed

    if world > 1:
        init_distributed("gloo", init_method=init, rank=rank, world_size=world)
    c, f = _cfgs()
    train_classifier(c, Path(data), Path(out) / "cls", progress=False, device="cpu")
    train_fcam(f, Path(out) / "cls" / "last", Path(data), Path(out) / "fcam", progress=False, device="cpu")
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_two_processes_match_one(tiny_dataset: Path, tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    _worker(0, 1, "", str(tiny_dataset), str(one))
    init = f"file://{tmp_path / 'pg_init'}"
    os.environ.pop("WORLD_SIZE", None)
    mp.spawn(_worker, args=(2, init, str(tiny_dataset), str(two)), nprocs=2, join=True)
    for stage in ("cls", "fcam"):
        a = load_file(str(one / stage / "last" / "model.safetensors"))
        b = load_file(str(two / stage / "last" / "model.safetensors"))
        assert a.keys() == b.keys()
        for k in a:
            if a[k].is_floating_point():
                assert torch.allclose(a[k], b[k], atol=TOL, rtol=0), (stage, k, (a[k] - b[k]).abs().max())
        # both runs made the same 6 optimizer steps (48 images / global batch 8)
        for run in (one, two):
            assert json.loads((run / stage / "summary.json").read_text())["steps"] == 6
    # not vacuous: the decoder BN running stats moved away from their init (mean 0 / var 1) in both runs
    a = load_file(str(one / "fcam" / "last" / "model.safetensors"))
    rm = [k for k in a if k.startswith("decoder.") and k.endswith("running_mean")]
    assert rm and any(float(a[k].abs().max()) > 1e-3 for k in rm)
