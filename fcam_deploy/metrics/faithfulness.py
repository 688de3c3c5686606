"""Faithfulness of localization maps without ground-truth boxes: Average Drop / Increase in Confidence
(Chattopadhay et al., WACV 2018) and ROAD (Rong et al., ICML 2022).

Both perturb the input according to the map and watch the classifier's score of the explained class. Semantics
follow the ``grad-cam`` package's ``pytorch_grad_cam.metrics`` (``cam_mult_image``, ``road``), so numbers can be
compared with it; ``tests/metrics/test_faithfulness.py`` checks them against the package on the same maps.

**Average Drop / Increase in Confidence.** The explanation image is ``x * M`` (the *normalised* input tensor times
the map in [0, 1], as the package: a removed pixel becomes the normalisation mean). With ``Y`` the score of the
explained class on ``x`` and ``O`` on ``x * M``:
``Average Drop = 100 * mean_i max(0, Y_i - O_i) / Y_i`` (lower is better) and
``Increase in Confidence = 100 * mean_i [O_i > Y_i]`` (higher is better). The score is the softmax probability
(``score="softmax"``, the paper's confidence; the package's ``ClassifierOutputSoftmaxTarget``) or the raw logit.
The package's ``DropInConfidence`` returns ``max(0, Y - O)`` per image (not divided by Y) and
``IncreaseInConfidence`` ``[O > Y]``; this module returns both per image and the paper's percentages.

**ROAD** (RemOve And Debias). For a percentile p of the map's values (NumPy's linear-interpolation percentile):
MoRF ("most relevant first") keeps the pixels whose map value is *below* the p-th percentile and imputes the rest;
LeRF ("least relevant first") keeps those whose ``1 - map`` is below the p-th percentile of ``1 - map``. Removed
pixels are filled by noisy linear imputation: each removed pixel equals the weighted mean of its 8 neighbours
inside the image (weights 1/6 edge, 1/12 diagonal), a sparse linear system over all removed pixels solved exactly,
plus ``noise * N(0, 1)`` per value (noise 0.01). The score change ``O_p - Y`` is averaged over the percentiles
(the package's default 10, 20, ..., 90); ROAD combined ``= (mean LeRF change - mean MoRF change) / 2`` (higher is
better: removing the least relevant pixels should hurt little, the most relevant ones a lot).

Departures from the package, none of which changes a result: the linear system is built vectorised and solved by a
sparse LU in a nested-dissection order (about 2x faster than the package's ``spsolve``; the solutions agree to
1e-12); the noise comes from a generator seeded per (seed, image, percentile, order) so runs are reproducible (the
package draws from the global torch RNG); an image whose whole map ties (nothing kept) is filled with 0 (the
normalisation mean) plus noise, where the package's system is singular.

Shapes: ``images (N, 3, H, W)`` float, normalised as the model expects; ``maps (N, H, W)`` float in [0, 1] at the
image resolution; ``classes (N,)`` int64. ``model(x)`` returns logits ``(N, K)`` (or an object with ``.logits``,
or a tuple starting with them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from fcam_deploy.errors import InputError

__all__ = [
    "NEIGHBOUR_WEIGHTS",
    "ROAD_PERCENTILES",
    "ConfidenceResult",
    "ROADResult",
    "ScoreKind",
    "class_scores",
    "confidence_change",
    "noisy_linear_impute",
    "road",
    "road_keep_mask",
]

ScoreKind = Literal["softmax", "logit"]

#: ``pytorch_grad_cam.metrics.road.neighbors_weights``: (dy, dx) -> weight of the 8 neighbours.
NEIGHBOUR_WEIGHTS: tuple[tuple[tuple[int, int], float], ...] = (
    ((1, 1), 1 / 12),
    ((0, 1), 1 / 6),
    ((-1, 1), 1 / 12),
    ((1, -1), 1 / 12),
    ((0, -1), 1 / 6),
    ((-1, -1), 1 / 12),
    ((1, 0), 1 / 6),
    ((-1, 0), 1 / 6),
)
#: The package's ``ROADMostRelevantFirstAverage`` / ``ROADCombined`` percentiles.
ROAD_PERCENTILES: tuple[int, ...] = (10, 20, 30, 40, 50, 60, 70, 80, 90)


# ------------------------------------------------------------------------------------------------- helpers
def _logits(out: Any) -> Tensor:
    if isinstance(out, Tensor):
        logits = out
    elif hasattr(out, "logits"):
        logits = out.logits
    elif isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor):
        logits = out[0]
    else:
        raise InputError(f"cannot find logits in a model output of type {type(out).__name__}")
    if not isinstance(logits, Tensor) or logits.ndim != 2:
        raise InputError(f"model logits must be a (N, K) tensor, got {getattr(logits, 'shape', type(logits))}")
    return logits


def _check(images: Tensor, maps: Tensor | np.ndarray, classes: Tensor | Sequence[int]) -> tuple[Tensor, Tensor, Tensor]:
    if not isinstance(images, Tensor) or images.ndim != 4 or not images.is_floating_point():
        raise InputError(f"images must be a float (N, C, H, W) tensor, got {getattr(images, 'shape', type(images))}")
    m = torch.as_tensor(maps)
    if m.ndim != 3 or tuple(m.shape) != (images.shape[0], images.shape[2], images.shape[3]):
        raise InputError(f"maps must be (N, H, W) = {(images.shape[0], *images.shape[2:])}, got {tuple(m.shape)}")
    if not m.is_floating_point() or not bool(torch.isfinite(m).all()) or float(m.min()) < 0 or float(m.max()) > 1:
        raise InputError("maps must be finite floats in [0, 1] (fix: min-max normalise them)")
    c = torch.as_tensor(classes, dtype=torch.int64).reshape(-1)
    if c.shape[0] != images.shape[0]:
        raise InputError(f"classes must have one entry per image ({images.shape[0]}), got {c.shape[0]}")
    return images, m, c


def class_scores(
    model: Callable[[Tensor], Any],
    images: Tensor,
    classes: Tensor | Sequence[int],
    *,
    score: ScoreKind = "softmax",
    batch_size: int = 32,
) -> np.ndarray:
    """Score of ``classes`` for each image: softmax probability or raw logit, ``(N,)`` float64 (no grad)."""
    if score not in ("softmax", "logit"):
        raise InputError(f"score must be 'softmax' or 'logit', got {score!r}")
    cls = torch.as_tensor(classes, dtype=torch.int64).reshape(-1)
    out = []
    with torch.no_grad():
        for i in range(0, images.shape[0], batch_size):
            logits = _logits(model(images[i : i + batch_size])).float()
            if int(cls.max()) >= logits.shape[1] or int(cls.min()) < 0:
                raise InputError(f"classes must lie in [0, {logits.shape[1]})")
            s = torch.softmax(logits, dim=1) if score == "softmax" else logits
            out.append(s.gather(1, cls[i : i + batch_size, None].to(s.device))[:, 0].double().cpu())
    return torch.cat(out).numpy()


# --------------------------------------------------------------------------------- drop / increase in confidence
@dataclass(frozen=True)
class ConfidenceResult:
    """Scores of the explained class before (``x``) and after (``x * M``) masking, ``(N,)`` float64 each."""

    before: np.ndarray
    after: np.ndarray

    @property
    def absolute_drop(self) -> np.ndarray:
        """Per image ``max(0, Y - O)`` (the package's ``DropInConfidence``)."""
        return np.maximum(self.before - self.after, 0.0)

    @property
    def drop(self) -> np.ndarray:
        """Per image ``max(0, Y - O) / Y``; needs positive scores (softmax)."""
        if np.any(self.before <= 0):
            raise InputError(
                "a class score on the clean image is <= 0: the relative drop needs positive scores "
                "(fix: score='softmax')"
            )
        return self.absolute_drop / self.before

    @property
    def increase(self) -> np.ndarray:
        """Per image ``O > Y`` as 0/1 (the package's ``IncreaseInConfidence``)."""
        return (self.after > self.before).astype(np.float64)

    @property
    def average_drop(self) -> float:
        """Average Drop in percent (lower is better); needs positive scores (softmax)."""
        return float(100.0 * self.drop.mean())

    @property
    def increase_in_confidence(self) -> float:
        """Increase in Confidence in percent (higher is better)."""
        return float(100.0 * self.increase.mean())


def confidence_change(
    model: Callable[[Tensor], Any],
    images: Tensor,
    maps: Tensor | np.ndarray,
    classes: Tensor | Sequence[int],
    *,
    score: ScoreKind = "softmax",
    batch_size: int = 32,
) -> ConfidenceResult:
    """Average Drop / Increase in Confidence inputs: the class score on ``images`` and on ``images * maps``.

    Args:
        model: the classifier (eval mode; not changed).
        images: ``(N, 3, H, W)`` normalised float.
        maps: ``(N, H, W)`` in [0, 1].
        classes: ``(N,)`` the explained class per image.
        score: ``"softmax"`` (probability, the paper's confidence) or ``"logit"``.
        batch_size: forward batch size.
    """
    images, m, cls = _check(images, maps, classes)
    before = class_scores(model, images, cls, score=score, batch_size=batch_size)
    masked = images * m[:, None].to(images)
    after = class_scores(model, masked, cls, score=score, batch_size=batch_size)
    return ConfidenceResult(before=before, after=after)


# ---------------------------------------------------------------------------------------------------- ROAD
def _nd_order(r: np.ndarray, c: np.ndarray, leaf: int = 32) -> np.ndarray:
    """Nested-dissection order of grid points ``(r, c)``: split the bounding box along its longer side at a
    1-pixel line (a separator for the 8-neighbour stencil), order left part, right part, separator; recurse.
    Returns a permutation of ``range(len(r))``."""
    order: list[np.ndarray] = []
    pending: list[tuple[bool, np.ndarray]] = [(False, np.arange(len(r)))]  # LIFO: (emit as is?, indices)
    while pending:
        emit, part = pending.pop()
        if emit or len(part) <= leaf:
            order.append(part)
            continue
        rr, cc = r[part], c[part]
        if rr.max() - rr.min() >= cc.max() - cc.min():
            mid = (int(rr.max()) + int(rr.min())) // 2
            left, sep, right = part[rr < mid], part[rr == mid], part[rr > mid]
        else:
            mid = (int(cc.max()) + int(cc.min())) // 2
            left, sep, right = part[cc < mid], part[cc == mid], part[cc > mid]
        if len(left) == 0 or len(right) == 0:
            order.append(part)
            continue
        pending.extend([(True, sep), (False, right), (False, left)])  # popped: left, right, then sep
    return np.concatenate(order)


def noisy_linear_impute(
    image: Tensor,
    keep: Tensor | np.ndarray,
    *,
    noise: float = 0.01,
    generator: torch.Generator | None = None,
) -> Tensor:
    """ROAD's noisy linear imputation of the pixels where ``keep`` is False.

    Args:
        image: ``(C, H, W)`` float (normalised image).
        keep: ``(H, W)`` bool, True for pixels kept as they are.
        noise: standard deviation of the Gaussian noise added to every imputed value.
        generator: CPU generator of the noise (``None``: the global torch RNG).

    Returns:
        ``(C, H, W)`` float32 tensor: kept pixels unchanged, removed ones the solution of the 8-neighbour
        averaging system plus noise.
    """
    import scipy.sparse as sp  # lazy: only ROAD needs scipy
    from scipy.sparse.linalg import splu

    if image.ndim != 3:
        raise InputError(f"image must be (C, H, W), got {tuple(image.shape)}")
    k = np.asarray(keep.cpu() if isinstance(keep, Tensor) else keep).astype(bool)
    ch, h, w = image.shape
    if k.shape != (h, w):
        raise InputError(f"keep must be (H, W) = {(h, w)}, got {k.shape}")
    flat = image.detach().to("cpu", torch.float64).reshape(ch, -1).numpy()
    kflat = k.ravel()
    miss = np.flatnonzero(~kflat)
    n = len(miss)
    out = flat.copy()
    if n == 0:
        return torch.from_numpy(out.reshape(ch, h, w)).float()
    if n == h * w:
        values = np.zeros((n, ch))
    else:
        r0, c0 = np.divmod(miss, w)
        perm = _nd_order(r0, c0)
        miss, r0, c0 = miss[perm], r0[perm], c0[perm]
        var = np.full(h * w, -1, dtype=np.int64)
        var[miss] = np.arange(n)
        diag = np.zeros(n)
        rhs = np.zeros((n, ch))
        rows, cols, vals = [], [], []
        for (dy, dx), wt in NEIGHBOUR_WEIGHTS:
            r, c = r0 + dy, c0 + dx
            ok = (r >= 0) & (r < h) & (c >= 0) & (c < w)
            diag[ok] += wt
            nb = np.where(ok, r * w + c, 0)
            known = ok & kflat[nb]
            rhs[known] += wt * flat[:, nb[known]].T
            unknown = ok & ~kflat[nb]
            rows.append(np.flatnonzero(unknown))
            cols.append(var[nb[unknown]])
            vals.append(np.full(int(unknown.sum()), -wt))
        a = sp.csc_matrix(
            (
                np.concatenate([diag, *vals]),
                (np.concatenate([np.arange(n), *rows]), np.concatenate([np.arange(n), *cols])),
            ),
            shape=(n, n),
        )
        lu = splu(a, permc_spec="NATURAL", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
        values = lu.solve(rhs)
    out[:, miss] = values.T
    res = torch.from_numpy(out.reshape(ch, h, w)).float()
    if noise:
        eps = torch.randn((ch, n), generator=generator, dtype=torch.float32)
        res.reshape(ch, -1)[:, torch.from_numpy(miss)] += noise * eps
    return res


def road_keep_mask(cam: np.ndarray, percentile: float, order: Literal["morf", "lerf"]) -> np.ndarray:
    """Pixels ROAD keeps at ``percentile`` (``(H, W)`` bool): MoRF ``cam < P_p(cam)``; LeRF
    ``1 - cam < P_p(1 - cam)`` (float32 arithmetic, NumPy's default percentile, as the package)."""
    m = np.asarray(cam, dtype=np.float32)
    if order == "lerf":
        m = (np.float32(1.0) - m).astype(np.float32)
    elif order != "morf":
        raise InputError(f"order must be 'morf' or 'lerf', got {order!r}")
    return np.asarray(m < np.percentile(m, percentile))


@dataclass(frozen=True)
class ROADResult:
    """ROAD scores.

    Attributes:
        percentiles: the percentiles p.
        before: ``(N,)`` class score on the clean images.
        morf: ``(P, N)`` class score after MoRF imputation at each percentile.
        lerf: ``(P, N)`` the same for LeRF.
    """

    percentiles: tuple[float, ...]
    before: np.ndarray
    morf: np.ndarray
    lerf: np.ndarray

    @property
    def morf_change(self) -> np.ndarray:
        """``(P,)`` mean score change per percentile, MoRF (lower is better)."""
        return (self.morf - self.before[None]).mean(axis=1)

    @property
    def lerf_change(self) -> np.ndarray:
        """``(P,)`` mean score change per percentile, LeRF (higher is better)."""
        return (self.lerf - self.before[None]).mean(axis=1)

    @property
    def combined_per_image(self) -> np.ndarray:
        """``(N,)`` the package's ``ROADCombined``: ``(mean_p LeRF change - mean_p MoRF change) / 2``."""
        return ((self.lerf - self.morf).mean(axis=0)) / 2.0

    @property
    def combined(self) -> float:
        """Mean of :attr:`combined_per_image` (higher is better)."""
        return float(self.combined_per_image.mean())


def road(
    model: Callable[[Tensor], Any],
    images: Tensor,
    maps: Tensor | np.ndarray,
    classes: Tensor | Sequence[int],
    *,
    percentiles: Sequence[float] = ROAD_PERCENTILES,
    score: ScoreKind = "softmax",
    noise: float = 0.01,
    seed: int = 0,
    batch_size: int = 32,
    workers: int = 1,
) -> ROADResult:
    """ROAD MoRF / LeRF scores of ``maps`` (see the module docstring).

    Args:
        model: the classifier (eval mode).
        images: ``(N, 3, H, W)`` normalised float.
        maps: ``(N, H, W)`` in [0, 1].
        classes: ``(N,)`` explained class per image.
        percentiles: the p values (package default 10..90).
        score: ``"softmax"`` or ``"logit"``.
        noise: imputation noise (0.01 as the package).
        seed: seeds the noise of image i, percentile j, order o as ``(seed, i, j, o)``.
        batch_size: forward batch size (imputed images are forwarded in batches of this size).
        workers: threads imputing in parallel (SciPy's sparse LU releases the GIL); results do not depend on it.
    """
    images, m, cls = _check(images, maps, classes)
    pcts = tuple(float(p) for p in percentiles)
    if not pcts or any(not 0 <= p <= 100 for p in pcts):
        raise InputError(f"percentiles must lie in [0, 100], got {pcts}")
    before = class_scores(model, images, cls, score=score, batch_size=batch_size)
    maps_np = m.detach().to("cpu", torch.float32).numpy()
    results = {"morf": np.zeros((len(pcts), images.shape[0])), "lerf": np.zeros((len(pcts), images.shape[0]))}
    orders: tuple[Literal["morf"], Literal["lerf"]] = ("morf", "lerf")
    jobs = [
        (order, o, i, j) for i in range(images.shape[0]) for o, order in enumerate(orders) for j in range(len(pcts))
    ]
    if workers < 1:
        raise InputError(f"workers must be >= 1, got {workers}")
    cpu_images = images.detach().cpu()

    def impute(job: tuple[Literal["morf", "lerf"], int, int, int]) -> Tensor:
        order, o, i, j = job
        keep = road_keep_mask(maps_np[i], pcts[j], order)
        gen = torch.Generator().manual_seed(((seed * 1_000_003 + i) * 131 + j) * 2 + o)
        return noisy_linear_impute(cpu_images[i], keep, noise=noise, generator=gen)

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(jobs), batch_size):  # impute a batch, then one forward (batch-1 forwards are slow)
            chunk = jobs[start : start + batch_size]
            imputed = list(pool.map(impute, chunk))
            _score_chunk(model, imputed, chunk, images, cls, score, batch_size, results)
    return ROADResult(percentiles=pcts, before=before, morf=results["morf"], lerf=results["lerf"])


def _score_chunk(
    model: Callable[[Tensor], Any],
    imputed: list[Tensor],
    chunk: list[tuple[str, int, int, int]],
    images: Tensor,
    cls: Tensor,
    score: ScoreKind,
    batch_size: int,
    results: dict[str, np.ndarray],
) -> None:
    got = class_scores(
        model, torch.stack(imputed).to(images), cls[[i for _, _, i, _ in chunk]], score=score, batch_size=batch_size
    )
    for (order, _, i, j), v in zip(chunk, got, strict=True):
        results[order][j, i] = v
