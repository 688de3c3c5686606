"""LPCAM (Chen & Sun, CVPR 2023) for WSOL: local prototypes per class, fitted offline, applied in closed form.

Fitting (wsol-protocol.md §3.2-3.4), per class c over the training images labelled c:

1. CAM of c at the target layer, ``ReLU(W[c] . A) / (max + 1e-5)`` (§3.1's normalisation);
2. foreground vectors = features at locations with CAM > ``select_threshold`` (0.1), background = CAM < 0.1
   (equality dropped);
3. k-means with cosine distance (K = 12 for each set), the kmeans-pytorch 0.3 algorithm re-implemented in torch:
   init = K distinct random rows drawn with a seeded ``torch.Generator``; assign to ``argmin 1 - cos``; centre =
   arithmetic mean of the raw member vectors; stop when ``(sum_k ||c_new - c_old||)^2 < tol`` (tol 5);
4. selection by the classifier: ``p = softmax(u @ W.T)`` (no bias, as the repo's bias-free 1x1 conv);
   FG prototypes = FG centres with ``p[c] > 0.9``, context (BG) prototypes = BG centres with ``0.05 < p[c] < 0.9``.

Differences from the VOC code, all documented choices: single scale, no flip, at the target layer's own
resolution (the VOC code upsamples the multi-scale CAM and downsamples it back with nearest, which is the
identity at a single scale); a seeded generator (the original uses the unseeded global numpy RNG); an iteration
cap (``max_iter``, none in 0.3); an empty cluster keeps its previous centre (0.3 produces NaN); when no FG centre
passes 0.9 the one with the highest ``p[c]`` is kept (``fallback=True``, the COCO rule; the VOC code crashes).

Inference (§3.5): ``L = ReLU(f_hat . (m_fg - m_bg))`` (or ``f_hat . m_fg`` without BG prototypes), with ``m`` the
mean of the L2-normalised prototypes: :class:`~fcam_deploy.cams.closed_form.LPCAMHead`. Equal to the
mean-of-cosines form with torch's ``cosine_similarity`` eps (1e-8) exactly.

The prototypes are stored per class in a safetensors file (``fg.<c>``, ``bg.<c>``: ``(n, C)`` float32) whose JSON
header carries ``{"format": "fcam-deploy-lpcam", "format_version": "1", "header": "<json: arch, layer, K, seed,
...>"}``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fcam_deploy.cams._core import (
    Normalize,
    Upsample,
    model_device_dtype,
    preserve_model_state,
    resolve_classes,
    resolve_head,
    validate_images,
)
from fcam_deploy.cams.closed_form import LPCAMHead
from fcam_deploy.cams.extractors import BaseExtractor
from fcam_deploy.errors import CheckpointError, InputError

__all__ = ["LPCAM", "LPCAMPrototypes", "fit_lpcam", "kmeans_cosine", "load_lpcam", "lpcam_mean_of_cosines"]

LPCAM_FORMAT = "fcam-deploy-lpcam"
LPCAM_FORMAT_VERSION = "1"


# --------------------------------------------------------------------------------------------------- k-means
def kmeans_cosine(
    x: Tensor, num_clusters: int, generator: torch.Generator, *, tol: float = 5.0, max_iter: int = 300
) -> Tensor:
    """k-means with cosine distance, as kmeans-pytorch 0.3 (``distance='cosine'``), seeded.

    Args:
        x: ``(n, C)`` float rows (CPU).
        num_clusters: K. With ``n <= K`` every row is its own centre (returned as is, ``(n, C)``).
        generator: CPU ``torch.Generator``; the initial centres are ``x[randperm(n)[:K]]``.
        tol: stop when ``(sum_k ||c_new - c_old||_2)^2 < tol``.
        max_iter: iteration cap.

    Returns:
        ``(min(n, K), C)`` centres (arithmetic means of the raw member vectors), same dtype as ``x``.
    """
    if x.ndim != 2:
        raise InputError(f"k-means input must be (n, C), got {tuple(x.shape)}")
    if num_clusters < 1:
        raise InputError(f"num_clusters must be >= 1, got {num_clusters}")
    n = x.shape[0]
    if n <= num_clusters:
        return x.clone()
    xn = x / torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min(1e-8)
    centres = x[torch.randperm(n, generator=generator)[:num_clusters]].clone()
    for _ in range(max_iter):
        cn = centres / torch.linalg.vector_norm(centres, dim=1, keepdim=True).clamp_min(1e-8)
        assign = (xn @ cn.T).argmax(dim=1)  # argmin of 1 - cos (first index on ties, as argmin)
        onehot = nn.functional.one_hot(assign, num_clusters).to(x.dtype)  # (n, K)
        counts = onehot.sum(dim=0)
        sums = onehot.T @ x
        new = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], centres)
        shift = torch.linalg.vector_norm(new - centres, dim=1).sum()
        centres = new
        if float(shift) ** 2 < tol:
            break
    return centres


# ------------------------------------------------------------------------------------------------ prototypes
@dataclass(frozen=True)
class LPCAMPrototypes:
    """Fitted LPCAM prototypes.

    Attributes:
        fg: class -> ``(n_fg, C)`` float32 CPU foreground prototypes (classes without images are absent).
        bg: class -> ``(n_bg, C)`` float32 CPU context prototypes (possibly ``(0, C)``).
        num_classes: K of the classifier.
        channels: C of the target layer.
        header: JSON-serialisable fit settings: ``arch``, ``layer``, ``K``, ``seed`` and the thresholds.
    """

    fg: dict[int, Tensor]
    bg: dict[int, Tensor]
    num_classes: int
    channels: int
    header: dict[str, Any] = field(default_factory=dict)

    def class_vectors(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> tuple[
        Tensor, Tensor, Tensor
    ]:
        """``(vectors (K, C), has_bg (K,) bool, available (K,) bool)``: ``m_fg - m_bg`` (or ``m_fg``) per class,
        ``m`` = mean of the L2-normalised prototypes (eps 1e-8); zeros where a class has no prototypes."""
        vec = torch.zeros(self.num_classes, self.channels, dtype=torch.float64)
        has_bg = torch.zeros(self.num_classes, dtype=torch.bool)
        avail = torch.zeros(self.num_classes, dtype=torch.bool)
        for c, p in self.fg.items():
            if p.shape[0] == 0:
                continue
            avail[c] = True
            vec[c] = _mean_unit(p)
            b = self.bg.get(c)
            if b is not None and b.shape[0] > 0:
                has_bg[c] = True
                vec[c] -= _mean_unit(b)
        return vec.to(device=device, dtype=dtype), has_bg.to(device), avail.to(device)

    def save(self, path: str | Path) -> Path:
        """Write a safetensors file atomically (tmp + fsync + rename). Returns the path."""
        from safetensors.torch import save as st_save  # lazy

        tensors: dict[str, Tensor] = {}
        for c, p in self.fg.items():
            tensors[f"fg.{c}"] = p.detach().to("cpu", torch.float32).contiguous()
        for c, p in self.bg.items():
            tensors[f"bg.{c}"] = p.detach().to("cpu", torch.float32).contiguous()
        header = dict(self.header, num_classes=self.num_classes, channels=self.channels)
        meta = {"format": LPCAM_FORMAT, "format_version": LPCAM_FORMAT_VERSION, "header": json.dumps(header)}
        data = st_save(tensors, metadata=meta)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | Path) -> LPCAMPrototypes:
        """Read a file written by :meth:`save`. Raises :class:`CheckpointError` naming what is wrong."""
        return load_lpcam(path)


def _mean_unit(p: Tensor) -> Tensor:
    p = p.to(torch.float64)
    return (p / torch.linalg.vector_norm(p, dim=1, keepdim=True).clamp_min(1e-8)).mean(dim=0)


def load_lpcam(path: str | Path) -> LPCAMPrototypes:
    """Load LPCAM prototypes from a safetensors file (see :meth:`LPCAMPrototypes.save`)."""
    from safetensors import safe_open  # lazy

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: LPCAM prototype file not found (fix: run fit_lpcam(...).save(path))")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except CheckpointError:
        raise
    except Exception as exc:  # safetensors raises its own SafetensorError / OSError
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc
    if meta.get("format") != LPCAM_FORMAT:
        raise CheckpointError(f"{path}: format is {meta.get('format')!r}, expected {LPCAM_FORMAT!r}")
    if meta.get("format_version") != LPCAM_FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: format_version {meta.get('format_version')!r} is not supported (expected "
            f"{LPCAM_FORMAT_VERSION}); refit the prototypes with this version"
        )
    try:
        header = json.loads(meta["header"])
        num_classes = int(header.pop("num_classes"))
        channels = int(header.pop("channels"))
    except (KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: malformed header ({exc})") from exc
    fg: dict[int, Tensor] = {}
    bg: dict[int, Tensor] = {}
    for key, t in tensors.items():
        kind, _, idx = key.partition(".")
        if kind not in ("fg", "bg") or not idx.isdigit():
            raise CheckpointError(f"{path}: unexpected tensor {key!r} (expected fg.<class> / bg.<class>)")
        c = int(idx)
        if c >= num_classes or t.ndim != 2 or t.shape[1] != channels or t.dtype != torch.float32:
            raise CheckpointError(
                f"{path}: tensor {key!r} has shape {tuple(t.shape)} {t.dtype}; expected (n, {channels}) float32 for "
                f"a class < {num_classes}"
            )
        (fg if kind == "fg" else bg)[c] = t
    return LPCAMPrototypes(fg=fg, bg=bg, num_classes=num_classes, channels=channels, header=header)


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


def fit_lpcam(
    model: nn.Module,
    loader: Iterable[Any],
    *,
    target_layer: nn.Module | str | None = None,
    head: nn.Linear | str | None = None,
    num_clusters: int = 12,
    seed: int = 0,
    select_threshold: float = 0.1,
    fg_threshold: float = 0.9,
    bg_band: tuple[float, float] = (0.05, 0.9),
    tol: float = 5.0,
    max_iter: int = 300,
    fallback: bool = True,
    max_vectors_per_class: int | None = None,
    arch: str | None = None,
) -> LPCAMPrototypes:
    """Fit LPCAM prototypes from training images (see the module docstring for the algorithm).

    Args:
        model: classifier whose target layer feeds GAP -> ``head`` (a CAMClassifier).
        loader: iterable of ``{"image": (N,3,H,W), "label": (N,)}`` dicts or ``(images, labels)`` tuples.
        target_layer: layer of the local features (``model.cam_layer`` by default).
        head: the Linear after GAP (``model.head`` by default).
        num_clusters: K for each of the FG and BG sets (12).
        seed: seeds the k-means initialisation (class c, set s uses ``Generator().manual_seed(seed*1009 + 2c + s)``
            so a class's prototypes do not depend on which other classes are fitted). Same seed -> same result.
        select_threshold: CAM threshold splitting FG (>) and BG (<) locations (0.1).
        fg_threshold: a FG centre is kept when ``p[c] >`` this (0.9).
        bg_band: a BG centre is kept when ``lo < p[c] < hi`` ((0.05, 0.9)).
        tol, max_iter: k-means stopping rule (``shift^2 < tol``) and cap.
        fallback: keep the FG centre with the highest ``p[c]`` when none passes ``fg_threshold``.
        max_vectors_per_class: if set, each class's FG/BG sets are subsampled (seeded) to at most this many rows
            before clustering (memory bound: all vectors of a class are kept on the CPU otherwise).
        arch: recorded in the header (default ``model.arch`` when it is a str, else the class name).

    Returns:
        :class:`LPCAMPrototypes` for every class that has at least one training image.
    """
    if num_clusters < 1:
        raise InputError(f"num_clusters must be >= 1, got {num_clusters}")
    cap = _Capture(model, target_layer)
    lin = resolve_head(model, head)
    device, dtype = model_device_dtype(model)
    w = lin.weight.detach()
    fg_rows: dict[int, list[Tensor]] = {}
    bg_rows: dict[int, list[Tensor]] = {}
    with preserve_model_state(model):
        for images, labels in _batches(loader):
            x = validate_images(images, device, dtype)
            a, logits = cap._forward_capture(x, for_grad=False)
            cls = resolve_classes(labels, x.shape[0], int(logits.shape[1]), logits)
            if a.shape[1] != lin.in_features:
                raise InputError(f"target layer has {a.shape[1]} channels but the head expects {lin.in_features}")
            cam = torch.relu(torch.einsum("nc,nchw->nhw", w.index_select(0, cls).to(a.dtype), a))
            cam = cam / (cam.flatten(1).amax(dim=1)[:, None, None] + 1e-5)
            feats = a.permute(0, 2, 3, 1)  # (N, h, w, C)
            for i in range(x.shape[0]):
                c = int(cls[i])
                fg_rows.setdefault(c, []).append(feats[i][cam[i] > select_threshold].to("cpu", torch.float32))
                bg_rows.setdefault(c, []).append(feats[i][cam[i] < select_threshold].to("cpu", torch.float32))
    w_cpu = w.to("cpu", torch.float32)
    channels = int(w.shape[1])
    fg: dict[int, Tensor] = {}
    bg: dict[int, Tensor] = {}
    counts: dict[str, list[int]] = {}
    for c in sorted(fg_rows):
        sets = []
        for s, rows in enumerate((fg_rows[c], bg_rows[c])):
            gen = torch.Generator().manual_seed(seed * 1009 + 2 * c + s)
            x = torch.cat(rows) if rows else torch.zeros(0, channels)
            if max_vectors_per_class is not None and x.shape[0] > max_vectors_per_class:
                x = x[torch.randperm(x.shape[0], generator=gen)[:max_vectors_per_class]]
            sets.append(kmeans_cosine(x, num_clusters, gen, tol=tol, max_iter=max_iter) if len(x) else x)
        fg_c, bg_c = sets
        p_fg = torch.softmax(fg_c @ w_cpu.T, dim=1)[:, c] if len(fg_c) else torch.zeros(0)
        keep = p_fg > fg_threshold
        if not bool(keep.any()) and fallback and len(fg_c):
            keep = p_fg == p_fg.max()
        p_bg = torch.softmax(bg_c @ w_cpu.T, dim=1)[:, c] if len(bg_c) else torch.zeros(0)
        keep_bg = (p_bg > bg_band[0]) & (p_bg < bg_band[1])
        fg[c] = fg_c[keep].contiguous()
        bg[c] = bg_c[keep_bg].contiguous()
        counts[str(c)] = [int(fg[c].shape[0]), int(bg[c].shape[0])]
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
        "fg_threshold": fg_threshold,
        "bg_band": list(bg_band),
        "tol": tol,
        "max_iter": max_iter,
        "fallback": fallback,
        "max_vectors_per_class": max_vectors_per_class,
        "prototype_counts": counts,
    }
    return LPCAMPrototypes(fg=fg, bg=bg, num_classes=int(w.shape[0]), channels=channels, header=header)


def lpcam_mean_of_cosines(features: Tensor, fg: Tensor, bg: Tensor | None) -> Tensor:
    """The literal §3.5 form for one class (reference/oracle): ``FG = mean_j cos(f, fg_j)``, and with context
    prototypes ``ReLU(FG - mean_k cos(f, bg_k))``. ``features``: ``(N, C, h, w)``; returns ``(N, h, w)``."""
    def mean_cos(protos: Tensor) -> Tensor:
        sims = [
            nn.functional.cosine_similarity(features, p.to(features)[None, :, None, None], dim=1) for p in protos
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
        flip: ``f = F(x) + flip(F(flip(x)))`` as the LPCAM code (one scale).
    """

    method = "lpcam"

    def __init__(
        self,
        model: nn.Module,
        prototypes: LPCAMPrototypes | str | Path,
        target_layer: nn.Module | str | None = None,
        *,
        flip: bool = False,
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
        self.prototypes = prototypes
        self.flip = bool(flip)
        self._head = LPCAMHead()

    def _raw_maps(self, x: Tensor, classes: Any) -> tuple[Tensor, Tensor, Tensor]:
        a, logits = self._forward_capture(x, for_grad=False)
        if a.shape[1] != self.prototypes.channels:
            raise InputError(
                f"LPCAM prototypes have {self.prototypes.channels} channels but layer {self.layer_name!r} has "
                f"{a.shape[1]} (fix: use the prototypes fitted on this model and layer)"
            )
        if self.flip:
            a_flip, _ = self._forward_capture(torch.flip(x, dims=(3,)), for_grad=False)
            a = a + torch.flip(a_flip, dims=(3,))
        cls = resolve_classes(classes, x.shape[0], self.prototypes.num_classes, logits)
        vectors, has_bg, avail = self.prototypes.class_vectors(a.device, a.dtype)
        missing = sorted({int(c) for c in cls[~avail.index_select(0, cls)].tolist()})
        if missing:
            raise InputError(f"LPCAM has no prototypes for classes {missing} (no training images of them were fitted)")
        with torch.no_grad():
            raw = self._head(a, vectors, has_bg, cls)
        return raw, logits, cls
