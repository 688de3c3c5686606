"""LPCAM: seeded cosine k-means, prototype fitting (split + selection) against an oracle, the closed form against
the mean-of-cosines form, safetensors round trip, reproducibility."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from fcam_deploy.cams import LPCAM, LPCAMHead, LPCAMPrototypes, compute_maps, fit_lpcam, kmeans_cosine, load_lpcam
from fcam_deploy.cams.lpcam import lpcam_mean_of_cosines
from fcam_deploy.errors import CheckpointError, InputError

from ._models import make_images, make_model


def _loader(n_batches: int = 3, n: int = 4, num_classes: int = 3, seed: int = 0) -> list[dict]:
    out = []
    for b in range(n_batches):
        x = make_images(n=n, h=32, w=32, seed=seed + b)
        y = torch.arange(n) % num_classes
        out.append({"image": x, "label": y})
    return out


# ---------------------------------------------------------------------------------------------------- k-means
def _kmeans_oracle(x: torch.Tensor, init: torch.Tensor, tol: float, max_iter: int) -> torch.Tensor:
    """kmeans-pytorch 0.3 loop, written plainly (python loops over clusters)."""
    c = init.clone()
    for _ in range(max_iter):
        cos = nn.functional.cosine_similarity(x[:, None, :], c[None, :, :], dim=2)
        choice = torch.argmin(1 - cos, dim=1)
        prev = c.clone()
        for k in range(c.shape[0]):
            sel = x[choice == k]
            if len(sel):
                c[k] = sel.mean(0)
        if float(torch.sqrt(((c - prev) ** 2).sum(1)).sum()) ** 2 < tol:
            break
    return c


def test_kmeans_matches_reference_loop_and_is_seeded() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.rand(200, 6, generator=g, dtype=torch.float64)
    a = kmeans_cosine(x, 5, torch.Generator().manual_seed(7), tol=1e-12, max_iter=50)
    b = kmeans_cosine(x, 5, torch.Generator().manual_seed(7), tol=1e-12, max_iter=50)
    assert torch.equal(a, b)
    init = x[torch.randperm(200, generator=torch.Generator().manual_seed(7))[:5]]
    torch.testing.assert_close(a, _kmeans_oracle(x, init, 1e-12, 50))
    c = kmeans_cosine(x, 5, torch.Generator().manual_seed(8), tol=1e-12, max_iter=50)
    assert a.shape == c.shape == (5, 6)


def test_kmeans_recovers_directional_clusters_and_edge_cases() -> None:
    g = torch.Generator().manual_seed(0)
    dirs = torch.eye(4)[:3] * 5
    x = torch.cat([d + 0.05 * torch.randn(30, 4, generator=g) for d in dirs]) * torch.rand(90, 1, generator=g).add(
        0.5
    )
    cen = kmeans_cosine(x, 3, torch.Generator().manual_seed(1), tol=1e-10)
    found = nn.functional.normalize(cen, dim=1) @ nn.functional.normalize(dirs, dim=1).T
    assert sorted(found.argmax(1).tolist()) == [0, 1, 2] and float(found.max(1).values.min()) > 0.99
    few = torch.rand(3, 4, generator=g)
    assert torch.equal(kmeans_cosine(few, 12, g), few)  # n <= K: every row is a centre
    with pytest.raises(InputError):
        kmeans_cosine(torch.rand(5), 2, g)


# ------------------------------------------------------------------------------------------------------ fit
def test_fit_split_and_selection_match_oracle() -> None:
    """With K >= number of vectors every vector is its own centre, so the fitted prototypes must be exactly the
    FG/BG vectors selected by the §3.2 split (CAM/(max+1e-5) vs 0.1) and the §3.4 softmax rules."""
    model = make_model(1, num_classes=3)
    loader = _loader()
    protos = fit_lpcam(model, loader, num_clusters=10_000, fallback=False)
    w = model.head.weight.detach()
    fg_rows: dict[int, list] = {}
    bg_rows: dict[int, list] = {}
    with torch.no_grad():
        for item in loader:
            a = model.trunk(item["image"])
            for i, c in enumerate(item["label"].tolist()):
                cam = torch.relu(torch.einsum("c,chw->hw", w[c], a[i]))
                cam = cam / (cam.max() + 1e-5)
                f = a[i].permute(1, 2, 0)
                fg_rows.setdefault(c, []).append(f[cam > 0.1])
                bg_rows.setdefault(c, []).append(f[cam < 0.1])
    assert sorted(protos.fg) == [0, 1, 2]
    total_kept = 0
    for c in range(3):
        fg, bg = torch.cat(fg_rows[c]), torch.cat(bg_rows[c])
        p_fg = torch.softmax(fg @ w.T, 1)[:, c]
        p_bg = torch.softmax(bg @ w.T, 1)[:, c]
        torch.testing.assert_close(protos.fg[c], fg[p_fg > 0.9])
        torch.testing.assert_close(protos.bg[c], bg[(p_bg > 0.05) & (p_bg < 0.9)])
        total_kept += len(protos.fg[c]) + len(protos.bg[c])
    assert total_kept > 0


def test_fit_is_reproducible_and_seed_dependent() -> None:
    model = make_model(2, num_classes=3)
    kw = {"num_clusters": 4, "tol": 1e-9}
    a = fit_lpcam(model, _loader(), seed=5, **kw)
    b = fit_lpcam(model, _loader(), seed=5, **kw)
    for c in a.fg:
        assert torch.equal(a.fg[c], b.fg[c]) and torch.equal(a.bg[c], b.bg[c])
    assert a.header == b.header and a.header["K"] == 4 and a.header["layer"] == "trunk"
    # every class keeps at least one FG prototype (fallback) and at most K
    assert all(1 <= len(p) <= 4 for p in a.fg.values())


def test_fit_accepts_tuple_loader_and_leaves_model_untouched() -> None:
    model = make_model(0, num_classes=3)
    model.train()
    flags = [m.training for m in model.modules()]
    protos = fit_lpcam(model, [(d["image"], d["label"]) for d in _loader()], num_clusters=3)
    assert [m.training for m in model.modules()] == flags
    assert not model.trunk._forward_hooks
    assert protos.channels == 12 and protos.num_classes == 3


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
    cls = torch.tensor([0, 1, 2])
    got = LPCAMHead()(feats, vec, has_bg, cls)
    for i, c in enumerate(cls.tolist()):
        ref = lpcam_mean_of_cosines(feats[i : i + 1], fg[c].double(), bg[c].double())[0]
        torch.testing.assert_close(got[i], ref, atol=1e-12, rtol=1e-9)
    assert float(got[0].min()) >= 0.0


def test_lpcam_extractor_matches_oracle_and_flip(tmp_path) -> None:
    model = make_model(3, num_classes=3)
    protos = fit_lpcam(model, _loader(), num_clusters=4, tol=1e-9, seed=1)
    x = make_images(n=2, h=32, w=32, seed=9)
    cls = torch.tensor([2, 0])
    with torch.no_grad():
        a = model.trunk(x)
        a_flip = a + torch.flip(model.trunk(torch.flip(x, dims=(3,))), dims=(3,))
    for flip, feats in ((False, a), (True, a_flip)):
        res = compute_maps(model, x, "lpcam", cls, prototypes=protos, flip=flip)
        ref = torch.stack([
            lpcam_mean_of_cosines(feats[i : i + 1], protos.fg[c], protos.bg[c])[0] for i, c in enumerate(cls.tolist())
        ])
        lo = ref.flatten(1).min(1).values[:, None, None]
        hi = ref.flatten(1).max(1).values[:, None, None]
        torch.testing.assert_close(res.lowres, (ref - lo) / (hi - lo), atol=1e-5, rtol=0)
        assert res.full.shape == (2, 32, 32)
    # from a file, the same maps
    path = protos.save(tmp_path / "lpcam.safetensors")
    again = compute_maps(model, x, "lpcam", cls, prototypes=path)
    torch.testing.assert_close(again.lowres, compute_maps(model, x, "lpcam", cls, prototypes=protos).lowres)


# ---------------------------------------------------------------------------------------------------- file
def test_save_load_roundtrip_and_header(tmp_path) -> None:
    model = make_model(0, num_classes=3)
    protos = fit_lpcam(model, _loader(), num_clusters=3, seed=11, arch="tiny")
    path = protos.save(tmp_path / "sub" / "p.safetensors")
    loaded = LPCAMPrototypes.load(path)
    assert loaded.num_classes == 3 and loaded.channels == 12
    for c in protos.fg:
        assert torch.equal(loaded.fg[c], protos.fg[c]) and torch.equal(loaded.bg[c], protos.bg[c])
    assert loaded.header["arch"] == "tiny" and loaded.header["seed"] == 11 and loaded.header["K"] == 3
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata()
    assert meta["format"] == "fcam-deploy-lpcam" and json.loads(meta["header"])["layer"] == "trunk"
    assert not list(tmp_path.glob("sub/.*tmp"))  # atomic write left no temp file


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
    save_file({"fg.0": torch.zeros(2, 5)}, str(shape), metadata={
        "format": "fcam-deploy-lpcam", "format_version": "1",
        "header": json.dumps({"num_classes": 2, "channels": 4})})
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
