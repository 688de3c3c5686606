"""LPCAM pieces with independent oracles: k-means initialisation (numpy's choice), the bounded reservoir
(uniform inclusion, batching-independent, memory bound), class-balanced sampling, the split CAM's round trip
(OpenCV resize), the closed form vs the literal mean of cosines, threshold selection and the no-context warning,
multi-scale maps, the prototype file. The fit as a whole is checked against the official code's stored outputs in
``test_cams_lpcam_official.py``."""

from __future__ import annotations

import json
import warnings

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from fcam_deploy.cams import (
    LPCAM,
    LPCAMHead,
    LPCAMPrototypes,
    MissingContextWarning,
    class_balanced_indices,
    cluster_lpcam,
    compute_maps,
    fit_lpcam,
    kmeans_cosine,
    load_lpcam,
    select_lpcam_thresholds,
)
from fcam_deploy.cams.lpcam import lpcam_mean_of_cosines, split_cams
from fcam_deploy.cams.prototypes import FeatureReservoir
from fcam_deploy.errors import CheckpointError, ConfigError, InputError

from ._models import make_images, make_model


def _loader(n_batches: int = 3, n: int = 4, num_classes: int = 3, seed: int = 0) -> list[dict]:
    out = []
    for b in range(n_batches):
        x = make_images(n=n, h=32, w=32, seed=seed + b)
        y = torch.arange(n) % num_classes
        out.append({"image": x, "label": y})
    return out


# ---------------------------------------------------------------------------------------------------- k-means
def test_kmeans_starts_from_numpy_choice_and_converges_to_directions() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.rand(200, 6, generator=g, dtype=torch.float64)
    init = kmeans_cosine(x, 5, seed=7, max_iter=0)  # no iteration: kmeans-pytorch 0.3's initial state
    torch.testing.assert_close(init, x[np.random.RandomState(7).choice(200, 5, replace=False)])
    assert torch.equal(kmeans_cosine(x, 5, seed=7, tol=1e-12), kmeans_cosine(x, 5, seed=7, tol=1e-12))
    dirs = torch.eye(4)[:3] * 5
    pts = torch.cat([d + 0.05 * torch.randn(30, 4, generator=g) for d in dirs]) * torch.rand(90, 1, generator=g).add(
        0.5
    )
    cen = kmeans_cosine(pts, 3, seed=1, tol=1e-10)
    found = nn.functional.normalize(cen, dim=1) @ nn.functional.normalize(dirs, dim=1).T
    assert sorted(found.argmax(1).tolist()) == [0, 1, 2] and float(found.max(1).values.min()) > 0.99
    # a fixed point: each centre is the mean of the rows closest (in cosine) to it
    assign = (nn.functional.normalize(pts, dim=1) @ nn.functional.normalize(cen, dim=1).T).argmax(1)
    for k in range(3):
        torch.testing.assert_close(cen[k], pts[assign == k].mean(0))
    few = torch.rand(3, 4, generator=g)
    assert torch.equal(kmeans_cosine(few, 12, seed=0), few)  # n <= K: every row is a centre
    with pytest.raises(InputError):
        kmeans_cosine(torch.rand(5), 2, seed=0)


# -------------------------------------------------------------------------------------------------- reservoir
def test_reservoir_is_a_uniform_subset_kept_in_arrival_order() -> None:
    rows = torch.arange(50, dtype=torch.float32)[:, None].repeat(1, 3)
    full = FeatureReservoir(3, seed=0)
    for i in range(0, 50, 7):
        full.add(0, 0, rows[i : i + 7])
    assert torch.equal(full.rows(0, 0), rows)  # no limit: everything, in order
    hits = np.zeros(50)
    trials = 600
    for seed in range(trials):
        res = FeatureReservoir(3, seed=seed, max_vectors_per_class=10)
        for i in range(0, 50, 7):
            res.add(0, 0, rows[i : i + 7])
            assert res._held[(0, 0)] <= 2 * 10 + 7
        kept = res.rows(0, 0)[:, 0].long().numpy()
        assert len(kept) == 10 and np.all(np.diff(kept) > 0)  # a subset, in arrival order
        hits[kept] += 1
    # each row is kept with probability 10/50: binomial(600, 0.2) -> sd ~9.8; 5 sd band
    assert np.all(np.abs(hits - trials * 0.2) < 5 * np.sqrt(trials * 0.2 * 0.8)), hits
    # the kept set does not depend on how the rows were batched
    a, b = FeatureReservoir(3, seed=5, max_vectors_per_class=10), FeatureReservoir(3, seed=5, max_vectors_per_class=10)
    a.add(0, 0, rows)
    for r in rows:
        b.add(0, 0, r[None])
    assert torch.equal(a.rows(0, 0), b.rows(0, 0))


def test_reservoir_memory_budget_shrinks_as_classes_appear() -> None:
    c = 16
    budget_mb = 2 * 3 * 40 * c * 4 / 2**20  # 40 rows per set once 3 classes are seen
    res = FeatureReservoir(c, seed=0, memory_limit_mb=budget_mb, min_rows=4)
    for step in range(30):
        for cls in range(3 if step >= 10 else 1):
            res.add(cls, step % 2, torch.rand(9, c))
        cap = res.cap()
        assert all(n <= 2 * cap + 9 for n in res._held.values())
    assert res.cap() == 40
    assert all(res.rows(k, s).shape[0] <= 40 for k in range(3) for s in (0, 1))
    assert res.peak_rows * c * 4 <= 2 * budget_mb * 2**20 + 3 * 2 * 9 * c * 4 + 2 * 120 * c * 4
    with pytest.raises(InputError):
        FeatureReservoir(c, seed=0, memory_limit_mb=0)


def test_fit_caps_vectors_while_collecting() -> None:
    model = make_model(2, num_classes=3)
    capped = cluster_lpcam(model, _loader(), num_clusters=3, max_vectors_per_class=5, split="feature")
    for c, (fg_seen, bg_seen, fg_kept, bg_kept) in capped.header["vectors_seen_kept"].items():
        assert fg_kept == min(fg_seen, 5) and bg_kept == min(bg_seen, 5), c
    assert max(sum(v[:2]) for v in capped.header["vectors_seen_kept"].values()) > 10
    roomy = cluster_lpcam(model, _loader(), num_clusters=3, max_vectors_per_class=10_000, split="feature")
    exact = cluster_lpcam(model, _loader(), num_clusters=3, memory_limit_mb=None, split="feature")
    for c in exact.fg:  # a cap above the counts changes nothing
        assert torch.equal(roomy.fg[c], exact.fg[c]) and torch.equal(roomy.bg[c], exact.bg[c])


# ------------------------------------------------------------------------------------------ balanced sampling
def test_class_balanced_indices() -> None:
    labels = [0] * 50 + [1] * 3 + [2] * 20 + [0] * 10
    idx = class_balanced_indices(labels, per_class=5, seed=1)
    got = np.asarray(labels)[idx]
    assert idx == sorted(idx) and len(set(idx)) == len(idx)
    assert [int((got == c).sum()) for c in range(3)] == [5, 3, 5]
    assert idx == class_balanced_indices(np.asarray(labels), per_class=5, seed=1)
    assert idx != class_balanced_indices(labels, per_class=5, seed=2)
    assert len(class_balanced_indices(labels, total=30)) == 10 + 3 + 10
    with pytest.raises(InputError):
        class_balanced_indices(labels)
    with pytest.raises(InputError):
        class_balanced_indices([0.5, 1.0], per_class=1)


# -------------------------------------------------------------------------------------------------- split CAM
def test_official_split_is_the_bilinear_up_nearest_down_round_trip() -> None:
    """Single scale, no flip: ``make_cam.py`` upsamples the ReLU CAM bilinearly to the stride-rounded size, crops,
    divides by max + 1e-5; ``make_lpcam.py`` takes every stride-th pixel (nearest). Oracle: OpenCV INTER_LINEAR."""
    model = make_model(4, num_classes=3)  # stride 4
    x = make_images(n=2, h=30, w=37, seed=3)  # not multiples of the stride: ceil sizes 8 x 10, crop
    cls = torch.tensor([1, 2])
    with torch.no_grad():
        a = model.trunk(x)
        wc = model.head.weight[cls]
        got = split_cams(model.trunk, x, a, wc, mode="official", scales=(1.0,), flip=False)
        cam = torch.relu(torch.einsum("nc,nchw->nhw", wc, a)).numpy()
    assert a.shape[-2:] == (8, 10)
    for i in range(2):
        up = cv2.resize(cam[i], (40, 32), interpolation=cv2.INTER_LINEAR)[:30, :37]
        up = up / (up.max() + 1e-5)
        ref = up[np.floor(np.arange(8) * 30 / 8).astype(int)][:, np.floor(np.arange(10) * 37 / 10).astype(int)]
        np.testing.assert_allclose(got[i].numpy(), ref, atol=1e-6)
    feat = split_cams(model.trunk, x, a, wc, mode="feature")
    np.testing.assert_allclose(feat.numpy(), cam / (cam.reshape(2, -1).max(1)[:, None, None] + 1e-5), atol=1e-6)
    with pytest.raises(ConfigError):
        split_cams(model.trunk, x, a, wc, mode="bogus")  # type: ignore[arg-type]


# -------------------------------------------------------------------------------------------- closed form
def test_closed_form_equals_mean_of_cosines() -> None:
    g = torch.Generator().manual_seed(0)
    feats = torch.relu(torch.randn(3, 16, 6, 7, generator=g, dtype=torch.float64))
    feats[0, :, 0, 0] = 0.0  # an all-zero feature vector (cos = 0 in both forms)
    fg = {0: torch.rand(5, 16, generator=g), 1: torch.rand(3, 16, generator=g), 2: torch.rand(1, 16, generator=g)}
    bg = {0: torch.rand(4, 16, generator=g), 1: torch.zeros(0, 16), 2: torch.rand(2, 16, generator=g)}
    protos = LPCAMPrototypes(fg=fg, bg=bg, num_classes=4, channels=16, header={"layer": "trunk"})
    vec, has_bg, avail = protos.class_vectors(dtype=torch.float64)
    assert has_bg.tolist() == [True, False, True, False] and avail.tolist() == [True, True, True, False]
    assert protos.classes_without_context() == [1]
    cls = torch.tensor([0, 1, 2])
    got = LPCAMHead()(feats, vec, has_bg, cls)
    for i, c in enumerate(cls.tolist()):
        ref = lpcam_mean_of_cosines(feats[i : i + 1], fg[c].double(), bg[c].double())[0]
        torch.testing.assert_close(got[i], ref, atol=1e-12, rtol=1e-9)
    assert float(got[0].min()) >= 0.0


def test_multiscale_maps_average_the_upsampled_scales() -> None:
    model = make_model(3, num_classes=3)
    protos = fit_lpcam(model, _loader(), num_clusters=4, tol=1e-9, seed=1, on_no_context="ignore", split="feature")
    x = make_images(n=2, h=32, w=32, seed=9)
    cls = torch.tensor([2, 0])
    one = compute_maps(model, x, "lpcam", cls, prototypes=protos, flip=True)
    twice = compute_maps(model, x, "lpcam", cls, prototypes=protos, flip=True, scales=(1.0, 1.0))
    assert twice.lowres.shape == (2, 32, 32)  # formed at the input resolution
    up = nn.functional.interpolate(one.lowres[:, None], size=(32, 32), mode="bilinear", align_corners=False)[:, 0]
    lo = up.flatten(1).min(1).values[:, None, None]
    hi = up.flatten(1).max(1).values[:, None, None]
    torch.testing.assert_close(twice.full, (up - lo) / (hi - lo), atol=1e-5, rtol=0)
    four = compute_maps(model, x, "lpcam", cls, prototypes=protos, scales=(1.0, 0.5, 1.5, 2.0))
    assert four.full.shape == (2, 32, 32) and float(four.full.max()) == pytest.approx(1.0)
    with pytest.raises(InputError):
        LPCAM(model, protos, scales=())


# ----------------------------------------------------------------------------------- selection and context
def test_no_context_warns_or_fails_and_thresholds_are_selected() -> None:
    model = make_model(2, num_classes=3)
    clusters = cluster_lpcam(model, _loader(), num_clusters=4, tol=1e-9, split="feature")
    with pytest.warns(MissingContextWarning, match="keep no context prototype"):
        clusters.select(0.9, (1.0, 1.0))  # an empty band: no class keeps context
    with pytest.raises(ConfigError, match="no context"):
        clusters.select(0.9, (1.0, 1.0), on_no_context="error")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        none = clusters.select(0.9, (1.0, 1.0), on_no_context="ignore")
        every = clusters.select(0.9, (0.0, 1.0))  # every BG centre with 0 < p < 1 is context
    assert all(nb == 0 for _, nb in none.counts().values())
    for c, (_, nb) in every.counts().items():
        p = clusters.p_bg[c]
        assert nb == int(((p > 0) & (p < 1)).sum())
    assert every.header["prototype_counts"] == {str(c): list(v) for c, v in every.counts().items()}
    with pytest.raises(ConfigError):
        clusters.select(0.9, (0.5, 0.1))
    # the search keeps the best score, ties -> the earlier candidate
    cands = [
        {"fg_threshold": 0.9, "bg_band": (1.0, 1.0)},
        {"fg_threshold": 0.9, "bg_band": (0.0, 1.0)},
        {"fg_threshold": 0.5, "bg_band": (0.0, 1.0)},
    ]
    search = select_lpcam_thresholds(clusters, lambda p: float(sum(nb for _, nb in p.counts().values())), cands)
    assert search.best == {"fg_threshold": 0.9, "bg_band": (0.0, 1.0)}
    assert next(r["context_prototypes"] for r in search.table) == 0 and len(search.table) == 3
    assert search.prototypes.header["threshold_search"]["best_index"] == 1
    with pytest.raises(ConfigError):
        select_lpcam_thresholds(clusters, lambda p: 0.0, [{"fg_threshold": 0.9}])


def test_fit_accepts_tuple_loader_and_leaves_model_untouched() -> None:
    model = make_model(0, num_classes=3)
    model.train()
    flags = [m.training for m in model.modules()]
    protos = fit_lpcam(model, [(d["image"], d["label"]) for d in _loader()], num_clusters=3, on_no_context="ignore")
    assert [m.training for m in model.modules()] == flags
    assert not model.trunk._forward_hooks
    assert protos.channels == 12 and protos.num_classes == 3
    assert protos.header["split"] == "official" and protos.header["split_scales"] == [1.0, 0.5, 1.5, 2.0]


# ---------------------------------------------------------------------------------------------------- file
def test_save_load_roundtrip_and_header(tmp_path) -> None:
    model = make_model(0, num_classes=3)
    protos = fit_lpcam(model, _loader(), num_clusters=3, seed=11, arch="tiny", on_no_context="ignore", split="feature")
    path = protos.save(tmp_path / "sub" / "p.safetensors")
    loaded = LPCAMPrototypes.load(path)
    assert loaded.num_classes == 3 and loaded.channels == 12
    for c in protos.fg:
        assert torch.equal(loaded.fg[c], protos.fg[c]) and torch.equal(loaded.bg[c], protos.bg[c])
    assert loaded.header["arch"] == "tiny" and loaded.header["seed"] == 11 and loaded.header["K"] == 3
    assert loaded.header["prototype_counts"] == protos.header["prototype_counts"]
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata()
    assert meta["format"] == "fcam-deploy-lpcam" and json.loads(meta["header"])["layer"] == "trunk"
    assert not list(tmp_path.glob("sub/.*tmp"))  # atomic write left no temp file
    x = make_images(n=2, h=32, w=32, seed=9)
    again = compute_maps(model, x, "lpcam", [2, 0], prototypes=path)
    torch.testing.assert_close(again.lowres, compute_maps(model, x, "lpcam", [2, 0], prototypes=protos).lowres)


def test_load_errors(tmp_path) -> None:
    from safetensors.torch import save_file

    with pytest.raises(CheckpointError, match="not found"):
        load_lpcam(tmp_path / "nope.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file at all")
    with pytest.raises(CheckpointError, match="safetensors"):
        load_lpcam(bad)
    other = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(2)}, str(other), metadata={"format": "something-else"})
    with pytest.raises(CheckpointError, match="format"):
        load_lpcam(other)
    shape = tmp_path / "shape.safetensors"
    save_file(
        {"fg.0": torch.zeros(2, 5)},
        str(shape),
        metadata={
            "format": "fcam-deploy-lpcam",
            "format_version": "1",
            "header": json.dumps({"num_classes": 2, "channels": 4}),
        },
    )
    with pytest.raises(CheckpointError, match="fg.0"):
        load_lpcam(shape)


def test_lpcam_inference_errors() -> None:
    model = make_model(0, num_classes=3)
    x = make_images(n=1, h=32, w=32)
    only0 = LPCAMPrototypes(fg={0: torch.rand(2, 12)}, bg={}, num_classes=3, channels=12, header={"layer": "trunk"})
    with pytest.raises(InputError, match=r"no prototypes for classes \[2\]"):
        compute_maps(model, x, "lpcam", [2], prototypes=only0)
    wrong = LPCAMPrototypes(fg={0: torch.rand(2, 7)}, bg={}, num_classes=3, channels=7, header={"layer": "trunk"})
    with pytest.raises(InputError, match="channels"):
        LPCAM(model, wrong)(x, [0])
