"""LPCAM (Chen & Sun, CVPR 2023) for WSOL: local prototypes per class, fitted offline, applied in closed form.

Official code: zhaozhengChen/LPCAM at 39cdd8d (``step/make_cam.py``, ``step/make_lpcam.py``; read, not copied).

Fitting, per class c over the training images labelled c (:func:`cluster_lpcam` then
:meth:`~fcam_deploy.cams.prototypes.LPCAMClusters.select`; :func:`fit_lpcam` does both):

1. the split CAM of c. ``split="official"`` (default) is ``make_cam.py``: for each scale s of ``split_scales``
   (official: 1.0, 0.5, 1.5, 2.0) the image is resized to ``round(H*s) x round(W*s)`` (bicubic), and
   ``ReLU(W[c] . A)`` of it plus the flipped-back ``ReLU(W[c] . A)`` of its horizontal flip (``split_flip``) is
   resized bilinearly (align_corners=False) to ``ceil(H/r)*r x ceil(W/r)*r`` (r = the layer's stride) and cropped
   to H x W; the scales are summed and divided by ``max + 1e-5``; ``make_lpcam.py`` then resizes this full-size CAM
   back to the feature grid with PyTorch's default **nearest** interpolation. ``split="feature"`` is the cheap
   variant: ``ReLU(W[c] . A) / (max + 1e-5)`` at the feature resolution, one scale, no flip (not the same: even at
   one scale the bilinear-up / nearest-down round trip shifts the CAM by 15/32 of a cell);
2. foreground vectors = scale-1, unflipped features (``save_feature``) at cells with split CAM > ``select_threshold``
   (0.1), background = cells with CAM < 0.1 (equality dropped);
3. k-means with cosine distance (K = 12 for each set): :func:`~fcam_deploy.cams.prototypes.kmeans_cosine`,
   kmeans-pytorch 0.3's loop and initialisation, seeded per class and set;
4. selection by the classifier: ``p = softmax(u @ W.T)`` (no bias, as the official bias-free 1x1 conv);
   FG prototypes = FG centres with ``p[c] > fg_threshold``, context prototypes = BG centres with
   ``lo < p[c] < hi``. The official VOC values (0.9, (0.05, 0.9)) leave WSOL classifiers without context: a
   :class:`~fcam_deploy.cams.prototypes.MissingContextWarning` (or a ConfigError with ``on_no_context="error"``)
   says so, and :func:`select_lpcam_thresholds` chooses them on a validation split (``benchmarks/lpcam/``).

Inference (:class:`LPCAM`): ``L = ReLU(f_hat . (m_fg - m_bg))`` (or ``f_hat . m_fg`` for a class without context
prototypes), ``m`` = mean of the L2-normalised prototypes — :class:`~fcam_deploy.cams.closed_form.LPCAMHead`, equal
to the official mean-of-cosines with torch's ``cosine_similarity`` eps (1e-8) exactly. ``flip=True`` uses
``f = F(x) + flip(F(flip(x)))``; ``scales`` (official: 1.0, 0.5, 1.5, 2.0) averages the per-scale maps resized
bilinearly to the input size (then the map is formed at the input resolution).

Checked against the official code run locally (``tests/cams/data/lpcam_official/``, how it was made in its
``README.md``): single-scale + flip split CAM, prototypes and maps.

Remaining departures from the official code, with their effect measured on the previous ``fcam demo`` classifier
(stride 8, 4 classes, 96 px; test split MaxBoxAcc / MaxBoxAccV2 / PxAP, CAM 19.8 / 37.0 / 39.1; ``benchmarks/lpcam/``):

- Thresholds: VOC's (0.9, (0.05, 0.9)) leave every demo class without a context prototype (FG / context per class
  4/0, 7/0, 6/0, 7/0), which now warns. Chosen on validation MaxBoxAccV2 (:func:`select_lpcam_thresholds`):
  (0.5, (0.05, 0.9)), 5/0, 7/0, 6/0, 8/0 — still none: this classifier gives its background centres
  ``p[c] < 0.001``; keeping them as context (band (0, 0.5): 46 of 48) lowers validation MaxBoxAccV2 from 49.3 to
  46.3 (the demo's CAM misses the object's body, so "background" clusters hold body cells). Test: VOC
  47.4 / 50.8 / 40.6, chosen 48.2 / 50.1 / 41.5. Thresholds stay a per-classifier validation choice.
- Split: ``"official"`` (default) vs ``"feature"`` with VOC thresholds: 47.4 / 50.8 / 40.6 vs 30.0 / 42.1 / 37.7
  (the latter is what this module did before); with thresholds chosen on validation for each: 48.2 / 50.1 / 41.5 vs
  46.0 / 50.9 / 42.6, so on the demo the feature split's loss is mostly a thresholds mismatch. 33.7 % of the fit
  images' cells change FG/BG label (22.5 % with the official step at one scale); fitting costs 0.235 vs 0.031 CPU s
  per image (4 scales x flip).
- Multi-scale images are resized as normalised float tensors with antialiased bicubic (PIL's kernel, matched to
  5e-6 on float images) instead of PIL on the uint8 image before normalisation: against the official 4-scale
  run, 99.8 % of split cells agree and 18 of 20 classes get the same centres (``tests/cams/data/lpcam_official``).
- The split stride r is inferred as the power of two with ``ceil(H/r) = h`` (16 in the official ResNet-50, where it
  is hard-coded); with none the CAM is resized straight to H x W. Same numbers as the official run at H = 90.
- Single-label WSOL: one class per image (the ground truth), where VOC images carry several labels.
- k-means: seeded ``RandomState(seed*1009 + 2c + set)`` where 0.3 uses the unseeded global numpy RNG; an
  iteration cap (300); an empty cluster keeps its centre (0.3: NaN). Identical centres in the stored test. FG
  fallback (``fallback=True``): a class whose FG centres all fail ``fg_threshold`` keeps the best one (COCO rule;
  the VOC code crashes).
- Memory: vectors are subsampled uniformly while collected (:class:`~fcam_deploy.cams.prototypes.FeatureReservoir`;
  ``memory_limit_mb`` 2048 by default: no subsampling on the demo's 40-channel layer, about 650 rows per set and
  class for a 2048-channel, 200-class model). Capping the demo at 2000 / 500 / 100 rows per set (28 / 7 / 1.4 % of
  the vectors): MaxBoxAccV2 -0.2 / -1.0 / -1.8. The official code holds every vector.
- Fitting images: N per class (:func:`~fcam_deploy.cams.prototypes.class_balanced_indices`; VOC clusters all 1464
  train.txt images, COCO 100 per class with replacement). 100 per class vs the first 400 in file order (88-114 per
  class): 48.2 / 50.1 / 41.5 vs 46.0 / 49.3 / 41.5; on class-sorted metadata (CUB) the first images cover a few
  classes only.
- Inference defaults to one scale without flip (the ONNX-exportable closed form); the official map averages 4
  scales x flip: flip alone 49.4 / 52.0 / 41.6, 4 scales + flip 44.4 / 50.7 / 43.1 (9x the CPU per image), one
  scale 48.2 / 50.1 / 41.5. The map is min-max normalised (the protocol) where the official one is divided by its
  maximum: identical whenever context prototypes make the ReLU active (the map then has a zero).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from fcam_deploy.cams._core import (
    COSINE_EPS,
    LPCAM_CAM_EPS,
    Normalize,
    Upsample,
    channel_weighted_sum,
    model_device_dtype,
    preserve_model_state,
    resolve_classes,
    resolve_head,
    validate_images,
)
from fcam_deploy.cams.closed_form import LPCAMHead
from fcam_deploy.cams.extractors import BaseExtractor
from fcam_deploy.cams.prototypes import (
    VOC_THRESHOLDS,
    FeatureReservoir,
    LPCAMClusters,
    LPCAMPrototypes,
    MissingContextWarning,
    OnNoContext,
    class_balanced_indices,
    kmeans_cosine,
    load_lpcam,
    set_seed,
)
from fcam_deploy.errors import ConfigError, InputError

__all__ = [
    "DEFAULT_THRESHOLD_GRID",
    "LPCAM",
    "OFFICIAL_SCALES",
    "LPCAMClusters",
    "LPCAMPrototypes",
    "MissingContextWarning",
    "SplitMode",
    "ThresholdSearch",
    "class_balanced_indices",
    "cluster_lpcam",
    "fit_lpcam",
    "kmeans_cosine",
    "load_lpcam",
    "lpcam_mean_of_cosines",
    "rescale_images",
    "select_lpcam_thresholds",
    "split_cams",
]

#: ``run_sample.py --cam_scales`` and ``make_lpcam.py``'s inference scales.
OFFICIAL_SCALES: tuple[float, ...] = (1.0, 0.5, 1.5, 2.0)

SplitMode = Literal["official", "feature"]

#: Candidates of :func:`select_lpcam_thresholds`, VOC's first (ties keep the earlier candidate). The bands span the
#: official VOC (0.05, 0.9) and COCO (0, 0.5) rules, wider ones, and an empty band (no context at all) as control.
DEFAULT_THRESHOLD_GRID: tuple[dict[str, Any], ...] = tuple(
    {"fg_threshold": fg, "bg_band": band}
    for fg in (0.9, 0.7, 0.5)
    for band in ((0.05, 0.9), (0.0, 0.5), (0.01, 0.9), (0.001, 0.9), (0.0, 0.9), (0.0, 0.99), (1.0, 1.0))
)


# ------------------------------------------------------------------------------------------------ split CAM
def rescale_images(x: Tensor, scale: float) -> Tensor:
    """Resize ``(N, C, H, W)`` images to ``round(H*s) x round(W*s)`` (numpy rounding, as ``imutils.pil_rescale``)
    with antialiased bicubic interpolation (PIL's bicubic kernel on float data). ``scale == 1`` returns ``x``."""
    if scale == 1.0:
        return x
    if not scale > 0:
        raise InputError(f"scales must be > 0, got {scale}")
    h, w = x.shape[-2:]
    size = (max(1, round(h * scale)), max(1, round(w * scale)))  # round-half-even, as np.round
    return nn.functional.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)


def _stride(in_hw: tuple[int, int], feat_hw: tuple[int, int]) -> int | None:
    """The power-of-two stride r with ``ceil(H/r) == h`` and ``ceil(W/r) == w`` (None if there is none)."""
    for k in range(7):
        r = 2**k
        if math.ceil(in_hw[0] / r) == feat_hw[0] and math.ceil(in_hw[1] / r) == feat_hw[1]:
            return r
    return None


def _relu_cam(a: Tensor, wc: Tensor) -> Tensor:
    return torch.relu(channel_weighted_sum(wc.to(a.dtype), a))


def split_cams(
    capture: Callable[[Tensor], Tensor],
    x: Tensor,
    a: Tensor,
    wc: Tensor,
    *,
    mode: SplitMode = "official",
    scales: Sequence[float] = OFFICIAL_SCALES,
    flip: bool = True,
) -> Tensor:
    """The CAM that splits each image's feature cells into foreground / background, on the feature grid.

    Args:
        capture: ``images (N, 3, H', W') -> target-layer activations (N, C, h', w')`` (no grad).
        x: ``(N, 3, H, W)`` images at scale 1.
        a: ``(N, C, h, w)`` their activations at scale 1, unflipped.
        wc: ``(N, C)`` head weight rows of each image's class.
        mode: ``"official"`` (``make_cam.py`` + ``make_lpcam.py``, see the module docstring) or ``"feature"``.
        scales, flip: the official mode's scales and flip.

    Returns:
        ``(N, h, w)`` CAM in [0, 1) (divided by ``max + 1e-5``).
    """
    n, _, h_in, w_in = x.shape
    h, w = a.shape[-2:]
    if mode == "feature":
        cam = _relu_cam(a, wc)
        return cam / (cam.flatten(1).amax(dim=1)[:, None, None] + LPCAM_CAM_EPS)
    if mode != "official":
        raise ConfigError(f"split must be 'official' or 'feature', got {mode!r}")
    if not scales:
        raise ConfigError("split_scales must name at least one scale")
    r = _stride((h_in, w_in), (h, w))
    up = (math.ceil(h_in / r) * r, math.ceil(w_in / r) * r) if r else (h_in, w_in)
    total = torch.zeros(n, h_in, w_in, dtype=a.dtype, device=a.device)
    for s in scales:
        xs = rescale_images(x, float(s))
        a_s = a if float(s) == 1.0 else capture(xs)
        cam = _relu_cam(a_s, wc)
        if flip:
            cam = cam + torch.flip(_relu_cam(capture(torch.flip(xs, dims=(3,))), wc), dims=(2,))
        big = nn.functional.interpolate(cam[:, None], size=up, mode="bilinear", align_corners=False)[:, 0]
        total = total + big[:, :h_in, :w_in]
    total = total / (total.flatten(1).amax(dim=1)[:, None, None] + LPCAM_CAM_EPS)
    return nn.functional.interpolate(total[:, None], size=(h, w), mode="nearest")[:, 0]


# ------------------------------------------------------------------------------------------------------- fit
class _Capture(BaseExtractor):
    method = "lpcam-fit"


def _batches(loader: Iterable[Any]) -> Iterable[tuple[Tensor, Tensor]]:
    for item in loader:
        if isinstance(item, dict):
            if "image" not in item or "label" not in item:
                raise InputError("loader dict items need 'image' and 'label' keys (WSOLDataset layout)")
            images, labels = item["image"], item["label"]
        elif isinstance(item, (tuple, list)) and len(item) >= 2:
            images, labels = item[0], item[1]
        else:
            raise InputError(f"loader must yield dicts with image/label or (images, labels) tuples, got {type(item)}")
        labels = torch.as_tensor(labels)
        if images.ndim == 3:
            images = images[None]
        yield images, labels.reshape(-1)


def cluster_lpcam(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    target_layer: nn.Module | str | None = None,
    head: nn.Linear | str | None = None,
    num_clusters: int = 12,
    seed: int = 0,
    select_threshold: float = 0.1,
    split: SplitMode = "official",
    split_scales: Sequence[float] = OFFICIAL_SCALES,
    split_flip: bool = True,
    tol: float = 5.0,
    max_iter: int = 300,
    max_vectors_per_class: int | None = None,
    memory_limit_mb: float | None = 2048.0,
    arch: str | None = None,
) -> LPCAMClusters:
    """Collect FG / BG feature vectors per class, cluster them and score every centre with the classifier.

    Args:
        model: classifier whose target layer feeds GAP -> ``head`` (a CAMClassifier).
        loader: iterable of ``{"image": (N,3,H,W), "label": (N,)}`` dicts or ``(images, labels)`` tuples
            (normalised float images; e.g. a DataLoader over
            ``Subset(ds, class_balanced_indices(labels, per_class=N))``).
        target_layer: layer of the local features (``model.cam_layer`` by default).
        head: the Linear after GAP (``model.head`` by default).
        num_clusters: K for each of the FG and BG sets (12).
        seed: seeds k-means and the subsampling (class c, set s use ``seed*1009 + 2c + s``). Same seed -> same result.
        select_threshold: split CAM threshold (FG ``>``, BG ``<``; 0.1).
        split, split_scales, split_flip: how the split CAM is made (module docstring, step 1).
        tol, max_iter: k-means stopping rule (``shift^2 < tol``) and cap.
        max_vectors_per_class: cap on each class's FG and BG sets, applied while collecting.
        memory_limit_mb: budget for all collected vectors (per-set cap = budget / (2 * classes * C * 4 B), at least
            K rows), applied while collecting; ``None`` with ``max_vectors_per_class=None`` keeps every vector.
        arch: recorded in the header (default ``model.arch`` when it is a str, else the class name).

    Returns:
        :class:`~fcam_deploy.cams.prototypes.LPCAMClusters` for every class that has at least one image.
    """
    if num_clusters < 1:
        raise InputError(f"num_clusters must be >= 1, got {num_clusters}")
    if split not in ("official", "feature"):
        raise ConfigError(f"split must be 'official' or 'feature', got {split!r}")
    cap = _Capture(model, target_layer)
    lin = resolve_head(model, head)
    device, dtype = model_device_dtype(model)
    w = lin.weight.detach()
    channels = int(w.shape[1])
    store = FeatureReservoir(
        channels,
        seed,
        max_vectors_per_class=max_vectors_per_class,
        memory_limit_mb=memory_limit_mb,
        min_rows=num_clusters,
    )

    def capture(images: Tensor) -> Tensor:
        return cap._forward_capture(images, for_grad=False)[0]

    n_images = 0
    with preserve_model_state(model), torch.no_grad():
        for images, labels in _batches(loader):
            x = validate_images(images, device, dtype)
            a, logits = cap._forward_capture(x, for_grad=False)
            cls = resolve_classes(labels, x.shape[0], int(logits.shape[1]), logits)
            if a.shape[1] != lin.in_features:
                raise InputError(f"target layer has {a.shape[1]} channels but the head expects {lin.in_features}")
            cam = split_cams(capture, x, a, w.index_select(0, cls), mode=split, scales=split_scales, flip=split_flip)
            feats = a.permute(0, 2, 3, 1)  # (N, h, w, C)
            for i in range(x.shape[0]):
                c = int(cls[i])
                store.add(c, 0, feats[i][cam[i] > select_threshold].to("cpu", torch.float32))
                store.add(c, 1, feats[i][cam[i] < select_threshold].to("cpu", torch.float32))
            n_images += int(x.shape[0])
    w_cpu = w.to("cpu", torch.float32)
    fg: dict[int, Tensor] = {}
    bg: dict[int, Tensor] = {}
    p_fg: dict[int, Tensor] = {}
    p_bg: dict[int, Tensor] = {}
    vectors: dict[str, list[int]] = {}
    for c in store.classes:
        sets = []
        for s in (0, 1):
            x_rows = store.rows(c, s)
            sets.append(
                kmeans_cosine(x_rows, num_clusters, set_seed(seed, c, s), tol=tol, max_iter=max_iter)
                if len(x_rows)
                else x_rows
            )
        fg[c], bg[c] = sets
        p_fg[c] = torch.softmax(fg[c] @ w_cpu.T, dim=1)[:, c] if len(fg[c]) else torch.zeros(0)
        p_bg[c] = torch.softmax(bg[c] @ w_cpu.T, dim=1)[:, c] if len(bg[c]) else torch.zeros(0)
        vectors[str(c)] = [
            store.seen.get((c, 0), 0),
            store.seen.get((c, 1), 0),
            int(store.rows(c, 0).shape[0]),
            int(store.rows(c, 1).shape[0]),
        ]
    if arch is None:
        arch = getattr(model, "arch", None)
        if not isinstance(arch, str):
            arch = type(model).__name__
    header = {
        "arch": str(arch),
        "layer": cap.layer_name,
        "K": num_clusters,
        "seed": seed,
        "select_threshold": select_threshold,
        "split": split,
        "split_scales": [float(s) for s in split_scales] if split == "official" else [1.0],
        "split_flip": bool(split_flip) if split == "official" else False,
        "tol": tol,
        "max_iter": max_iter,
        "max_vectors_per_class": max_vectors_per_class,
        "memory_limit_mb": memory_limit_mb,
        "images": n_images,
        "vectors_seen_kept": vectors,  # class -> [fg seen, bg seen, fg clustered, bg clustered]
    }
    return LPCAMClusters(
        fg=fg, bg=bg, p_fg=p_fg, p_bg=p_bg, num_classes=int(w.shape[0]), channels=channels, header=header
    )


def fit_lpcam(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    fg_threshold: float = VOC_THRESHOLDS["fg_threshold"],
    bg_band: tuple[float, float] = VOC_THRESHOLDS["bg_band"],
    fallback: bool = True,
    on_no_context: OnNoContext = "warn",
    **cluster_kw: Any,
) -> LPCAMPrototypes:
    """Fit LPCAM prototypes: :func:`cluster_lpcam` (``cluster_kw``) then
    :meth:`~fcam_deploy.cams.prototypes.LPCAMClusters.select` (``fg_threshold``, ``bg_band``, ``fallback``,
    ``on_no_context``).

    The threshold defaults are VOC's; for a WSOL classifier choose them on its validation split
    (:func:`select_lpcam_thresholds`): with VOC's a class may keep no context prototype, which warns by default.
    """
    clusters = cluster_lpcam(model, loader, **cluster_kw)
    return clusters.select(fg_threshold, bg_band, fallback=fallback, on_no_context=on_no_context, stacklevel=3)


@dataclass(frozen=True)
class ThresholdSearch:
    """Result of :func:`select_lpcam_thresholds`.

    Attributes:
        best: the chosen ``{"fg_threshold": float, "bg_band": (lo, hi)}``.
        prototypes: the prototypes selected with ``best``.
        table: one row per candidate: thresholds, ``score``, ``classes_without_context``, ``context_prototypes``
            (total), ``fg_prototypes`` (total).
    """

    best: dict[str, Any]
    prototypes: LPCAMPrototypes
    table: list[dict[str, Any]]


def select_lpcam_thresholds(
    clusters: LPCAMClusters,
    score: Callable[[LPCAMPrototypes], float],
    candidates: Sequence[dict[str, Any]] = DEFAULT_THRESHOLD_GRID,
    *,
    fallback: bool = True,
) -> ThresholdSearch:
    """Choose the selection thresholds that maximise ``score`` (e.g. validation MaxBoxAccV2 of the LPCAM maps).

    The clusters are computed once; each candidate only re-selects centres (no re-clustering). Ties keep the
    earlier candidate (VOC's rule first in :data:`DEFAULT_THRESHOLD_GRID`).

    Args:
        clusters: from :func:`cluster_lpcam` on the training split.
        score: prototypes -> a number, higher is better; it must not look at the test split.
        candidates: dicts with ``fg_threshold`` and ``bg_band``.
        fallback: passed to :meth:`~fcam_deploy.cams.prototypes.LPCAMClusters.select`.
    """
    if not candidates:
        raise ConfigError("select_lpcam_thresholds needs at least one candidate")
    best_i, best_score = -1, -math.inf
    table: list[dict[str, Any]] = []
    chosen: LPCAMPrototypes | None = None
    for i, cand in enumerate(candidates):
        try:
            fg_t, band = float(cand["fg_threshold"]), (float(cand["bg_band"][0]), float(cand["bg_band"][1]))
        except (KeyError, TypeError, IndexError, ValueError) as exc:
            raise ConfigError(f"candidate {cand!r} needs fg_threshold and bg_band=(lo, hi) ({exc})") from exc
        protos = clusters.select(fg_t, band, fallback=fallback, on_no_context="ignore")
        value = float(score(protos))
        counts = protos.counts()
        table.append(
            {
                "fg_threshold": fg_t,
                "bg_band": list(band),
                "score": value,
                "classes_without_context": len(protos.classes_without_context()),
                "fg_prototypes": sum(nf for nf, _ in counts.values()),
                "context_prototypes": sum(nb for _, nb in counts.values()),
            }
        )
        if value > best_score:
            best_i, best_score, chosen = i, value, protos
    assert chosen is not None
    best = {"fg_threshold": table[best_i]["fg_threshold"], "bg_band": tuple(table[best_i]["bg_band"])}
    header = dict(chosen.header, threshold_search={"best_index": best_i, "score": best_score})
    chosen = LPCAMPrototypes(
        fg=chosen.fg, bg=chosen.bg, num_classes=chosen.num_classes, channels=chosen.channels, header=header
    )
    return ThresholdSearch(best=best, prototypes=chosen, table=table)


def lpcam_mean_of_cosines(features: Tensor, fg: Tensor, bg: Tensor | None) -> Tensor:
    """The literal official form for one class (reference/oracle): ``FG = mean_j cos(f, fg_j)``, and with context
    prototypes ``ReLU(FG - mean_k cos(f, bg_k))``. ``features``: ``(N, C, h, w)``; returns ``(N, h, w)``."""

    def mean_cos(protos: Tensor) -> Tensor:
        sims = [
            nn.functional.cosine_similarity(features, p.to(features)[None, :, None, None], dim=1, eps=COSINE_EPS)
            for p in protos
        ]
        return torch.stack(sims).mean(dim=0)

    out = mean_cos(fg)
    if bg is not None and bg.shape[0] > 0:
        out = torch.relu(out - mean_cos(bg))
    return out


# ------------------------------------------------------------------------------------------------- extractor
class LPCAM(BaseExtractor):
    """LPCAM maps through the closed form (one normalised vector per class).

    Args:
        model: the classifier the prototypes were fitted on.
        prototypes: :class:`LPCAMPrototypes` or a path to their safetensors file.
        target_layer: defaults to the layer recorded in the prototypes' header.
        flip: ``f = F(x) + flip(F(flip(x)))`` per scale, as the official code.
        scales: image scales whose maps are averaged (official: :data:`OFFICIAL_SCALES`). With anything but
            ``(1.0,)`` each scale's map is resized bilinearly (align_corners=False) to the stride-rounded input size
            and cropped, as ``make_lpcam.py``'s ``high_res``, so ``lowres`` is then at the input resolution.
        upsample, normalize: see :class:`~fcam_deploy.cams.extractors.BaseExtractor`.
    """

    method = "lpcam"

    def __init__(
        self,
        model: nn.Module,
        prototypes: LPCAMPrototypes | str | Path,
        target_layer: nn.Module | str | None = None,
        *,
        flip: bool = False,
        scales: Sequence[float] = (1.0,),
        upsample: Upsample = "bilinear",
        normalize: Normalize = "minmax",
    ) -> None:
        if isinstance(prototypes, (str, Path)):
            prototypes = load_lpcam(prototypes)
        if not isinstance(prototypes, LPCAMPrototypes):
            raise InputError(f"prototypes must be LPCAMPrototypes or a path, got {type(prototypes).__name__}")
        if target_layer is None:
            target_layer = prototypes.header.get("layer")
        super().__init__(model, target_layer, upsample=upsample, normalize=normalize)
        scales = tuple(float(s) for s in scales)
        if not scales or any(not s > 0 for s in scales):
            raise InputError(f"scales must be a non-empty sequence of positive numbers, got {scales}")
        self.prototypes = prototypes
        self.flip = bool(flip)
        self.scales = scales
        self._head = LPCAMHead()

    def _features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        a, logits = self._forward_capture(x, for_grad=False)
        if a.shape[1] != self.prototypes.channels:
            raise InputError(
                f"LPCAM prototypes have {self.prototypes.channels} channels but layer {self.layer_name!r} has "
                f"{a.shape[1]} (fix: use the prototypes fitted on this model and layer)"
            )
        if self.flip:
            a_flip, _ = self._forward_capture(torch.flip(x, dims=(3,)), for_grad=False)
            a = a + torch.flip(a_flip, dims=(3,))
        return a, logits

    def _raw_maps(self, x: Tensor, classes: Any) -> tuple[Tensor, Tensor, Tensor]:
        a, logits = self._features(x)
        cls = resolve_classes(classes, x.shape[0], self.prototypes.num_classes, logits)
        vectors, has_bg, avail = self.prototypes.class_vectors(a.device, a.dtype)
        missing = sorted({int(c) for c in cls[~avail.index_select(0, cls)].tolist()})
        if missing:
            raise InputError(f"LPCAM has no prototypes for classes {missing} (no training images of them were fitted)")
        with torch.no_grad():
            raw = self._head(a, vectors, has_bg, cls)
            if self.scales == (1.0,):
                return raw, logits, cls
            h_in, w_in = x.shape[-2:]
            r = _stride((h_in, w_in), (a.shape[-2], a.shape[-1]))
            up = (math.ceil(h_in / r) * r, math.ceil(w_in / r) * r) if r else (h_in, w_in)
            total = torch.zeros(x.shape[0], h_in, w_in, dtype=a.dtype, device=a.device)
            for s in self.scales:
                m = raw if s == 1.0 else self._head(self._features(rescale_images(x, s))[0], vectors, has_bg, cls)
                big = nn.functional.interpolate(m[:, None], size=up, mode="bilinear", align_corners=False)[:, 0]
                total = total + big[:, :h_in, :w_in]
        return total / len(self.scales), logits, cls
