"""LPCAM prototypes as data: k-means, the fitted clusters and their selection, the prototype file, and the
bounded-memory, class-balanced collection of local features that fitting needs.

Nothing here runs a model (that is :mod:`fcam_deploy.cams.lpcam`); this module imports only ``_core`` and
``fcam_deploy.errors``, so the closed-form heads can use the prototypes without an import cycle.

Pieces (the algorithm is in :mod:`fcam_deploy.cams.lpcam`'s docstring):

- :func:`kmeans_cosine`: kmeans-pytorch 0.3 with ``distance='cosine'``, initialised as it is
  (``np.random.choice(n, K, replace=False)``, here on a ``RandomState`` seeded per class and set);
- :class:`LPCAMClusters`: every FG / BG centre of every class with its classifier probability ``p[c]``;
  :meth:`LPCAMClusters.select` applies the thresholds (cheap, so thresholds can be searched without re-clustering)
  and warns (:class:`MissingContextWarning`) or fails when a class keeps no context prototype;
- :class:`LPCAMPrototypes`: the selected prototypes, their closed-form class vectors, the safetensors file;
- :class:`FeatureReservoir`: per-class uniform subsample of the FG / BG feature vectors under a memory budget,
  filled while the features are collected (never holds every vector);
- :func:`class_balanced_indices`: N images per class for fitting (instead of the first images in file order).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from fcam_deploy._io import atomic_write_bytes
from fcam_deploy.cams._core import COSINE_EPS
from fcam_deploy.errors import CheckpointError, ConfigError, FcamWarning, InputError

__all__ = [
    "LPCAM_FORMAT",
    "LPCAM_FORMAT_VERSION",
    "VOC_THRESHOLDS",
    "FeatureReservoir",
    "LPCAMClusters",
    "LPCAMPrototypes",
    "MissingContextWarning",
    "OnNoContext",
    "class_balanced_indices",
    "kmeans_cosine",
    "load_lpcam",
    "set_seed",
]

LPCAM_FORMAT = "fcam-deploy-lpcam"
LPCAM_FORMAT_VERSION = "1"

#: The official VOC selection rule (``make_lpcam.py``): FG centre kept if ``p[c] > 0.9``, context (BG) centre kept
#: if ``0.05 < p[c] < 0.9``. Chosen for a 20-class multi-label VOC classifier; on WSOL classifiers it can leave a
#: class with no context prototype (see :meth:`LPCAMClusters.select`).
VOC_THRESHOLDS: dict[str, Any] = {"fg_threshold": 0.9, "bg_band": (0.05, 0.9)}

OnNoContext = Literal["warn", "error", "ignore"]


class MissingContextWarning(FcamWarning):
    """A class keeps no context (background) prototype, so its LPCAM map is the foreground cosine alone
    (no context subtraction, no ReLU): the thresholds do not suit this classifier."""


def set_seed(seed: int, cls: int, which: int) -> int:
    """The k-means / subsampling seed of class ``cls``, set ``which`` (0 = FG, 1 = BG): ``seed*1009 + 2*cls + which``,
    so a class's prototypes do not depend on which other classes are fitted."""
    return int(seed) * 1009 + 2 * int(cls) + int(which)


# --------------------------------------------------------------------------------------------------- k-means
def kmeans_cosine(x: Tensor, num_clusters: int, seed: int, *, tol: float = 5.0, max_iter: int = 300) -> Tensor:
    """k-means with cosine distance, as kmeans-pytorch 0.3 (``kmeans(X, K, distance='cosine', tol=tol)``).

    Algorithm: initial centres = ``x[RandomState(seed).choice(n, K, replace=False)]`` (0.3 draws the same way from
    the unseeded global numpy RNG); repeat: assign each row to ``argmin_k 1 - cos(x, c_k)`` (first index on ties),
    move each centre to the arithmetic mean of its raw member rows, stop when ``(sum_k ||c_new - c_old||_2)^2 < tol``.

    Departures from 0.3: an iteration cap (``max_iter``; 0.3 has none) and an empty cluster keeps its previous
    centre (0.3 makes it NaN). Cosines are computed as ``x_hat @ c_hat.T`` with ``max(||.||, 1e-8)`` norms (0.3
    divides by the plain norm and sums a broadcast product: float rounding differs in the last bits).

    Args:
        x: ``(n, C)`` float rows (CPU).
        num_clusters: K. With ``n <= K`` every row is its own centre (returned as is, ``(n, C)``; 0.3 fails for
            ``n < K``).
        seed: seeds the initial choice.
        tol: stop threshold on the squared summed centre shift.
        max_iter: iteration cap.

    Returns:
        ``(min(n, K), C)`` centres, same dtype as ``x``.
    """
    if x.ndim != 2:
        raise InputError(f"k-means input must be (n, C), got {tuple(x.shape)}")
    if num_clusters < 1:
        raise InputError(f"num_clusters must be >= 1, got {num_clusters}")
    n = x.shape[0]
    if n <= num_clusters:
        return x.clone()
    xn = x / torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min(COSINE_EPS)
    init = np.random.RandomState(seed).choice(n, num_clusters, replace=False)
    centres = x[torch.from_numpy(init.astype(np.int64))].clone()
    for _ in range(max_iter):
        cn = centres / torch.linalg.vector_norm(centres, dim=1, keepdim=True).clamp_min(COSINE_EPS)
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
        header: JSON-serialisable fit settings: ``arch``, ``layer``, ``K``, ``seed``, the thresholds, the split,
            per-class prototype counts and feature-vector counts.
    """

    fg: dict[int, Tensor]
    bg: dict[int, Tensor]
    num_classes: int
    channels: int
    header: dict[str, Any] = field(default_factory=dict)

    def counts(self) -> dict[int, tuple[int, int]]:
        """class -> ``(n_fg, n_bg)`` prototype counts, for every fitted class."""
        return {c: (int(p.shape[0]), int(self.bg[c].shape[0]) if c in self.bg else 0) for c, p in self.fg.items()}

    def classes_without_context(self) -> list[int]:
        """Fitted classes that keep no context prototype (their map is the FG cosine alone, without ReLU)."""
        return sorted(c for c, (nf, nb) in self.counts().items() if nf > 0 and nb == 0)

    def class_vectors(
        self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
    ) -> tuple[Tensor, Tensor, Tensor]:
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
        """Write a safetensors file atomically (:func:`fcam_deploy._io.atomic_write_bytes`). Returns the path.

        Layout: tensors ``fg.<c>`` / ``bg.<c>`` ``(n, C)`` float32; metadata ``{"format": "fcam-deploy-lpcam",
        "format_version": "1", "header": "<json>"}``.
        """
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
        return atomic_write_bytes(path, data)

    @classmethod
    def load(cls, path: str | Path) -> LPCAMPrototypes:
        """Read a file written by :meth:`save`. Raises :class:`CheckpointError` naming what is wrong."""
        return load_lpcam(path)


def _mean_unit(p: Tensor) -> Tensor:
    p = p.to(torch.float64)
    return (p / torch.linalg.vector_norm(p, dim=1, keepdim=True).clamp_min(COSINE_EPS)).mean(dim=0)


def load_lpcam(path: str | Path) -> LPCAMPrototypes:
    """Load LPCAM prototypes from a safetensors file (see :meth:`LPCAMPrototypes.save`)."""
    from safetensors import safe_open  # lazy

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: LPCAM prototype file not found (fix: run fit_lpcam(...).save(path))")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (safe_open is not a dict)
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


# -------------------------------------------------------------------------------------------------- clusters
@dataclass(frozen=True)
class LPCAMClusters:
    """Every k-means centre of every fitted class, before selection.

    Attributes:
        fg, bg: class -> ``(k, C)`` float32 centres of the FG / BG feature sets (``k <= K``; ``(0, C)`` when the
            set was empty).
        p_fg, p_bg: class -> ``(k,)`` float32 ``softmax(centre @ W.T)[:, c]`` (the classifier's probability of the
            class for each centre, bias-free as the official 1x1 conv).
        num_classes, channels: K and C.
        header: fit settings (without the thresholds, which :meth:`select` adds).
    """

    fg: dict[int, Tensor]
    bg: dict[int, Tensor]
    p_fg: dict[int, Tensor]
    p_bg: dict[int, Tensor]
    num_classes: int
    channels: int
    header: dict[str, Any] = field(default_factory=dict)

    def select(
        self,
        fg_threshold: float = VOC_THRESHOLDS["fg_threshold"],
        bg_band: tuple[float, float] = VOC_THRESHOLDS["bg_band"],
        *,
        fallback: bool = True,
        on_no_context: OnNoContext = "warn",
        stacklevel: int = 2,
    ) -> LPCAMPrototypes:
        """Keep FG centres with ``p[c] > fg_threshold`` and context centres with ``lo < p[c] < hi``.

        Args:
            fg_threshold: FG selection threshold (VOC: 0.9).
            bg_band: ``(lo, hi)`` open interval for context centres (VOC: (0.05, 0.9)).
            fallback: when no FG centre passes, keep the one(s) with the highest ``p[c]`` (the COCO rule; the VOC
                code crashes on an empty set).
            on_no_context: what to do when a fitted class keeps no context prototype (its map is then the FG
                cosine alone, no context subtraction, no ReLU): ``"warn"`` (:class:`MissingContextWarning`, once,
                naming the classes and counts), ``"error"`` (:class:`~fcam_deploy.errors.ConfigError`) or
                ``"ignore"``.
            stacklevel: of the warning (wrappers pass theirs + 1 so it points at the user's call).

        Returns:
            :class:`LPCAMPrototypes`; its header records the thresholds and ``prototype_counts`` (class ->
            ``[n_fg, n_bg]``).
        """
        lo, hi = float(bg_band[0]), float(bg_band[1])
        if not (0.0 <= fg_threshold <= 1.0) or not (0.0 <= lo <= hi <= 1.0):
            raise ConfigError(
                f"LPCAM thresholds must lie in [0, 1] with lo <= hi, got fg_threshold={fg_threshold}, bg_band={bg_band}"
            )
        if on_no_context not in ("warn", "error", "ignore"):
            raise ConfigError(f"on_no_context must be 'warn', 'error' or 'ignore', got {on_no_context!r}")
        fg: dict[int, Tensor] = {}
        bg: dict[int, Tensor] = {}
        counts: dict[str, list[int]] = {}
        for c in sorted(self.fg):
            p_fg, p_bg = self.p_fg[c], self.p_bg[c]
            keep = p_fg > fg_threshold
            if not bool(keep.any()) and fallback and p_fg.numel():
                keep = p_fg == p_fg.max()
            keep_bg = (p_bg > lo) & (p_bg < hi)
            fg[c] = self.fg[c][keep].contiguous()
            bg[c] = self.bg[c][keep_bg].contiguous()
            counts[str(c)] = [int(fg[c].shape[0]), int(bg[c].shape[0])]
        header = dict(
            self.header,
            fg_threshold=float(fg_threshold),
            bg_band=[lo, hi],
            fallback=bool(fallback),
            prototype_counts=counts,
        )
        protos = LPCAMPrototypes(fg=fg, bg=bg, num_classes=self.num_classes, channels=self.channels, header=header)
        missing = protos.classes_without_context()
        if missing and on_no_context != "ignore":
            shown = ", ".join(f"{c} ({counts[str(c)][0]} fg / 0 context)" for c in missing[:8])
            more = f" and {len(missing) - 8} more" if len(missing) > 8 else ""
            msg = (
                f"LPCAM: {len(missing)} of {len(fg)} classes keep no context prototype with bg_band=({lo}, {hi}): "
                f"{shown}{more}. Their maps are the foreground cosine alone (no context subtraction, no ReLU). "
                "Fix: choose the thresholds on a validation split (fcam_deploy.cams.select_lpcam_thresholds) or "
                "widen bg_band; pass on_no_context='ignore' to accept foreground-only maps."
            )
            if on_no_context == "error":
                raise ConfigError(msg)
            warnings.warn(MissingContextWarning(msg), stacklevel=stacklevel)
        return protos


# ------------------------------------------------------------------------------------------- feature reservoir
class FeatureReservoir:
    """Per-class, per-set (FG / BG) uniform subsample of feature vectors, kept under a memory budget while they are
    collected.

    Every incoming row gets an independent uniform key from its class/set's own seeded generator (drawn in arrival
    order); the reservoir keeps the rows with the ``cap`` smallest keys (bottom-k sampling: a uniform random subset
    without replacement of everything seen, whatever the batching), in arrival order. Rows are buffered in chunks
    and compacted whenever a set holds more than ``2 * cap`` rows, so memory stays below about twice the budget plus
    one image's vectors. With no limit every row is kept, in arrival order (what the official code clusters).

    Args:
        channels: C.
        seed: base seed (per class/set seeds from :func:`set_seed`).
        max_vectors_per_class: cap on each class's FG and BG sets (``None``: no per-set cap).
        memory_limit_mb: total budget over all sets (``None``: none); the per-set cap becomes
            ``budget / (2 * classes seen * C * 4 bytes)`` and shrinks as new classes appear.
        min_rows: a budget-derived cap never goes below this (k-means needs at least K rows).
    """

    def __init__(
        self,
        channels: int,
        seed: int,
        *,
        max_vectors_per_class: int | None = None,
        memory_limit_mb: float | None = None,
        min_rows: int = 1,
    ) -> None:
        if max_vectors_per_class is not None and max_vectors_per_class < 1:
            raise InputError(f"max_vectors_per_class must be >= 1 or None, got {max_vectors_per_class}")
        if memory_limit_mb is not None and not memory_limit_mb > 0:
            raise InputError(f"memory_limit_mb must be > 0 or None, got {memory_limit_mb}")
        self.channels = int(channels)
        self.seed = int(seed)
        self.max_per_class = max_vectors_per_class
        self.limit_bytes = None if memory_limit_mb is None else float(memory_limit_mb) * 2**20
        self.min_rows = max(int(min_rows), 1)
        self._rows: dict[tuple[int, int], list[Tensor]] = {}
        self._keys: dict[tuple[int, int], list[Tensor]] = {}
        self._order: dict[tuple[int, int], list[Tensor]] = {}
        self._gens: dict[tuple[int, int], torch.Generator] = {}
        self._held: dict[tuple[int, int], int] = {}
        self.seen: dict[tuple[int, int], int] = {}
        self.peak_rows = 0

    @property
    def classes(self) -> list[int]:
        return sorted({c for c, _ in self.seen})

    def cap(self) -> int | None:
        """Current per-set row cap (``None`` = unbounded)."""
        caps = []
        if self.max_per_class is not None:
            caps.append(self.max_per_class)
        if self.limit_bytes is not None:
            n_sets = max(2 * len(self.classes), 2)
            caps.append(max(self.min_rows, int(self.limit_bytes // (n_sets * self.channels * 4))))
        return min(caps) if caps else None

    def add(self, cls: int, which: int, rows: Tensor) -> None:
        """Offer ``rows (n, C)`` (CPU float32) of class ``cls``, set ``which`` (0 = FG, 1 = BG)."""
        key = (int(cls), int(which))
        if rows.ndim != 2 or rows.shape[1] != self.channels:
            raise InputError(f"reservoir rows must be (n, {self.channels}), got {tuple(rows.shape)}")
        new_class = key not in self.seen and (key[0], 1 - key[1]) not in self.seen
        if key not in self.seen:
            self.seen[key] = 0
            self._rows[key], self._keys[key], self._order[key] = [], [], []
            self._gens[key] = torch.Generator().manual_seed(set_seed(self.seed, key[0], key[1]))
            self._held[key] = 0
        n = int(rows.shape[0])
        gen = self._gens[key]
        keys = torch.rand(n, generator=gen, dtype=torch.float64)
        start = self.seen[key]
        self.seen[key] += n
        if n:
            self._rows[key].append(rows.detach().to("cpu", torch.float32))
            self._keys[key].append(keys)
            self._order[key].append(torch.arange(start, start + n))
            self._held[key] += n
        cap = self.cap()
        if cap is not None:
            if new_class:  # the budget-derived cap shrank: compact every set that now exceeds twice the cap
                for k in list(self._rows):
                    if self._held[k] > 2 * cap:
                        self._compact(k, cap)
            elif self._held[key] > 2 * cap:
                self._compact(key, cap)
        self.peak_rows = max(self.peak_rows, sum(self._held.values()))

    def _compact(self, key: tuple[int, int], cap: int) -> None:
        rows = torch.cat(self._rows[key])
        keys = torch.cat(self._keys[key])
        order = torch.cat(self._order[key])
        if rows.shape[0] > cap:
            keep = torch.topk(keys, cap, largest=False, sorted=False).indices
            keep = keep[torch.argsort(order[keep])]  # arrival order
            rows, keys, order = rows[keep], keys[keep], order[keep]
        self._rows[key], self._keys[key], self._order[key] = [rows], [keys], [order]
        self._held[key] = int(rows.shape[0])

    def rows(self, cls: int, which: int) -> Tensor:
        """The kept rows ``(m, C)`` of a class/set in arrival order (``(0, C)`` when none was offered)."""
        key = (int(cls), int(which))
        if key not in self.seen:
            return torch.zeros(0, self.channels)
        cap = self.cap()
        if cap is not None and self._held[key] > cap:
            self._compact(key, cap)
        if not self._rows[key]:
            return torch.zeros(0, self.channels)
        if len(self._rows[key]) > 1:
            self._compact(key, self._held[key])
        return self._rows[key][0]


# ----------------------------------------------------------------------------------------- balanced sampling
def class_balanced_indices(
    labels: Sequence[int] | Tensor | np.ndarray,
    *,
    per_class: int | None = None,
    total: int | None = None,
    seed: int = 0,
) -> list[int]:
    """Dataset indices with (up to) N images of every class, for fitting LPCAM prototypes.

    Exactly one of ``per_class`` (N) or ``total`` (N = ``max(1, total // number of classes present)``) is given.
    Each class's indices are drawn without replacement from a generator seeded by ``(seed, class)``; a class with
    fewer than N images contributes all of them. The result is sorted (file order), so a loader over it reads the
    files sequentially.

    Args:
        labels: one int label per dataset item, in dataset order.
        per_class: images per class.
        total: approximate total budget, split evenly over the classes present.
        seed: sampling seed.

    Returns:
        Sorted list of dataset indices.
    """
    lab = np.asarray(labels.cpu() if isinstance(labels, Tensor) else labels).reshape(-1)
    if lab.size and not np.issubdtype(lab.dtype, np.integer):
        raise InputError(f"labels must be integers, got {lab.dtype}")
    if (per_class is None) == (total is None):
        raise InputError("give exactly one of per_class= or total=")
    classes = np.unique(lab)
    if per_class is None:
        assert total is not None
        if total < 1:
            raise InputError(f"total must be >= 1, got {total}")
        per_class = max(1, int(total) // max(len(classes), 1))
    if per_class < 1:
        raise InputError(f"per_class must be >= 1, got {per_class}")
    out: list[int] = []
    for c in classes.tolist():
        idx = np.flatnonzero(lab == c)
        if len(idx) > per_class:
            rng = np.random.RandomState((int(seed) * 1_000_003 + int(c)) % 2**32)
            idx = idx[rng.choice(len(idx), per_class, replace=False)]
        out.extend(int(i) for i in idx)
    return sorted(out)
