"""Forward-only closed forms of the CAM family for a target layer that feeds GAP -> Linear.

When the class score is ``y_c = b_c + sum_k W[c,k] * mean_ij A_k(i,j)``, the gradient of ``y_c`` w.r.t. the
activations is spatially constant, ``g_k(i,j) = W[c,k] / (h*w)`` (docs/protocol.md §4.4), so every gradient
method of the PyPI ``grad-cam`` package reduces to a channel weighting of ``A`` that needs no backward pass.
Writing ``v_k = W[c,k] / (h w)`` and ``S_k = sum_ij A_k(i,j)``:

==========  =====================================================================================
CAM         ``sum_k W[c,k] A_k``  (no ReLU, no bias; F-CAM/wsolevaluation)
GradCAM     ``ReLU(sum_k v_k A_k)``
GradCAM++   ``w_k = h w * ReLU(v_k) * v_k^2 / (2 v_k^2 + S_k v_k^3 + 1e-6)`` (0 where v_k = 0);
            ``ReLU(sum_k w_k A_k)`` — the package's alpha with its 1e-6 eps, exactly
XGradCAM    ``w_k = v_k S_k / (S_k + 1e-7)``; ``ReLU(sum_k w_k A_k)``
LayerCAM    ``ReLU(sum_k ReLU(v_k) A_k)``
LPCAM       ``f_hat . V[c]`` with ``f_hat = f / max(||f||, 1e-8)`` and ``V[c]`` the class's prototype vector
            (see :mod:`fcam_deploy.cams.lpcam`); ReLU only for classes with background prototypes
==========  =====================================================================================

Every head is an ``nn.Module`` with ``forward(A, W, classes)``: pure tensor ops (MatMul, Gather, Reduce*,
Where), no hooks, no in-place writes to its inputs, no data-dependent shapes, so it exports to ONNX with the
classifier in front of it. With ``normalize=True`` the head also applies the protocol min-max normalisation
(NaN or constant map -> 0) and returns maps in [0, 1].
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fcam_deploy.cams._core import (
    COSINE_EPS,
    GRADCAMPP_EPS,
    XGRADCAM_EPS,
    channel_weighted_sum,
    minmax_normalize,
)
from fcam_deploy.cams.prototypes import LPCAMPrototypes
from fcam_deploy.errors import InputError

__all__ = [
    "CLOSED_FORM_HEADS",
    "CAMHead",
    "ClosedFormCAM",
    "GradCAMHead",
    "GradCAMppHead",
    "LPCAMHead",
    "LayerCAMHead",
    "XGradCAMHead",
]


class _ClosedFormHead(nn.Module):
    """Base: gathers ``W[classes]`` and applies ``_map``; optional normalisation."""

    def __init__(self, normalize: bool = False) -> None:
        super().__init__()
        self.normalize = normalize

    def _map(self, a: Tensor, wc: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, activations: Tensor, weight: Tensor, classes: Tensor) -> Tensor:
        """Maps of ``classes`` from the target-layer activations.

        Args:
            activations: ``(N, C, h, w)`` float, the target layer's output (input of GAP).
            weight: ``(K, C)`` float, the weight of the Linear applied after GAP.
            classes: ``(N,)`` int64 in ``[0, K)``.

        Returns:
            ``(N, h, w)`` raw maps (the method's ReLU applied), or in [0, 1] with ``normalize=True``.
        """
        wc = weight.index_select(0, classes.reshape(-1)).to(activations.dtype)
        out = self._map(activations, wc)
        return minmax_normalize(out) if self.normalize else out


class CAMHead(_ClosedFormHead):
    """CAM (Zhou et al. 2016): ``sum_k W[c,k] A_k``, no ReLU, no bias."""

    def _map(self, a: Tensor, wc: Tensor) -> Tensor:
        return channel_weighted_sum(wc, a)


class GradCAMHead(_ClosedFormHead):
    """GradCAM with ``g_k = W[c,k]/(h w)``: ``ReLU(sum_k v_k A_k)``."""

    def _map(self, a: Tensor, wc: Tensor) -> Tensor:
        v = wc / (a.shape[-2] * a.shape[-1])
        return torch.relu(channel_weighted_sum(v, a))


class GradCAMppHead(_ClosedFormHead):
    """GradCAM++ as ``grad-cam`` computes it, with a spatially constant gradient (alpha eps 1e-6 kept)."""

    def _map(self, a: Tensor, wc: Tensor) -> Tensor:
        hw = a.shape[-2] * a.shape[-1]
        v = wc / hw
        s = a.sum(dim=(2, 3))
        v2 = v * v
        alpha = v2 / (2.0 * v2 + s * (v2 * v) + GRADCAMPP_EPS)
        alpha = torch.where(v != 0, alpha, torch.zeros_like(alpha))
        weights = torch.relu(v) * alpha * hw
        return torch.relu(channel_weighted_sum(weights, a))


class XGradCAMHead(_ClosedFormHead):
    """XGradCAM: ``w_k = v_k S_k / (S_k + 1e-7)``."""

    def _map(self, a: Tensor, wc: Tensor) -> Tensor:
        v = wc / (a.shape[-2] * a.shape[-1])
        s = a.sum(dim=(2, 3))
        return torch.relu(channel_weighted_sum(v * s / (s + XGRADCAM_EPS), a))


class LayerCAMHead(_ClosedFormHead):
    """LayerCAM: ``ReLU(sum_k ReLU(v_k) A_k)``."""

    def _map(self, a: Tensor, wc: Tensor) -> Tensor:
        v = wc / (a.shape[-2] * a.shape[-1])
        return torch.relu(channel_weighted_sum(torch.relu(v), a))


class LPCAMHead(nn.Module):
    """LPCAM closed form (docs/protocol.md §3.5): one normalised vector per class.

    ``mean_j cos(f, p_j) = f_hat . mean_j p_hat_j`` with ``x_hat = x / max(||x||, 1e-8)`` (torch
    ``cosine_similarity``'s eps), hence ``FG - BG = f_hat . (m_fg - m_bg)``: a per-pixel L2 normalisation then
    a 1x1 convolution. ReLU applies only to classes that have background prototypes.
    """

    def __init__(self, normalize: bool = False, eps: float = COSINE_EPS) -> None:
        super().__init__()
        self.normalize = normalize
        self.eps = eps

    def forward(self, features: Tensor, vectors: Tensor, has_bg: Tensor, classes: Tensor) -> Tensor:
        """Args:
            features: ``(N, C, h, w)`` float (the layer the prototypes were fitted on; flip-summed if used).
            vectors: ``(K, C)`` float, ``m_fg(c) - m_bg(c)`` (or ``m_fg(c)``) per class.
            has_bg: ``(K,)`` bool, whether class c has background prototypes.
            classes: ``(N,)`` int64.

        Returns:
            ``(N, h, w)`` LPCAM maps (raw, or in [0, 1] with ``normalize=True``).
        """
        norm = torch.linalg.vector_norm(features, dim=1, keepdim=True).clamp_min(self.eps)
        f_hat = features / norm
        vc = vectors.index_select(0, classes.reshape(-1)).to(features.dtype)
        out = channel_weighted_sum(vc, f_hat)
        relu_mask = has_bg.index_select(0, classes.reshape(-1)).reshape(-1, 1, 1)
        out = torch.where(relu_mask, torch.relu(out), out)
        return minmax_normalize(out) if self.normalize else out


#: method name -> closed-form head class (the gradient methods and CAM).
CLOSED_FORM_HEADS: dict[str, type[_ClosedFormHead]] = {
    "cam": CAMHead,
    "gradcam": GradCAMHead,
    "gradcampp": GradCAMppHead,
    "xgradcam": XGradCAMHead,
    "layercam": LayerCAMHead,
}


class ClosedFormCAM(nn.Module):
    """Classifier + closed-form CAM head in one forward-only module, ready for ``torch.onnx.export``.

    ``forward(x, classes=None) -> (logits (N, K), maps (N, h, w))``: ``A = model.features(x)[-1]`` (the
    CAMClassifier contract), ``logits = GAP(A) @ W.T + b`` (identical to the classifier's own logits when its
    ``cam_layer`` feeds GAP -> ``head``), ``classes`` defaults to ``argmax(logits)`` (an ArgMax node in the graph),
    then the method's head. No hooks, no backward pass, no in-place ops on graph inputs.

    Args:
        model: a CAMClassifier-like module with ``features(x) -> list[Tensor]`` and ``head: nn.Linear``.
        method: ``cam | gradcam | gradcampp | xgradcam | layercam | lpcam``.
        normalize: also min-max normalise the low-res maps to [0, 1] (NaN/constant -> 0), as ``compute_maps``.
        prototypes: for ``lpcam``, fitted :class:`~fcam_deploy.cams.prototypes.LPCAMPrototypes` (stored as buffers:
            one ``(K, C)`` vector matrix and a ``(K,)`` has-background mask).
    """

    def __init__(self, model: nn.Module, method: str, *, normalize: bool = True, prototypes: object = None) -> None:
        super().__init__()
        head = getattr(model, "head", None)
        if not isinstance(head, nn.Linear) or not callable(getattr(model, "features", None)):
            raise InputError("ClosedFormCAM needs a model with features(x) -> list[Tensor] and head: nn.Linear")
        self.model = model
        self.method = method
        if method == "lpcam":
            if not isinstance(prototypes, LPCAMPrototypes):
                raise InputError("ClosedFormCAM(method='lpcam') needs prototypes=LPCAMPrototypes")
            vectors, has_bg, _ = prototypes.class_vectors(head.weight.device, head.weight.dtype)
            self.register_buffer("lpcam_vectors", vectors)
            self.register_buffer("lpcam_has_bg", has_bg)
            self.lpcam = LPCAMHead(normalize=normalize)
        elif method in CLOSED_FORM_HEADS:
            self.cam_head = CLOSED_FORM_HEADS[method](normalize=normalize)
        else:
            raise InputError(
                f"no closed form for method {method!r} (choose one of {sorted(CLOSED_FORM_HEADS)} or lpcam)"
            )

    def forward(self, x: Tensor, classes: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Args:
            x: ``(N, 3, H, W)`` float images, normalised.
            classes: optional ``(N,)`` int64; default the top-1 class.

        Returns:
            ``(logits (N, K), maps (N, h, w))``.
        """
        feats = self.model.features(x)  # type: ignore[operator]  # checked callable in __init__
        a = feats[-1] if isinstance(feats, (list, tuple)) else feats
        head = self.model.head
        assert isinstance(head, nn.Linear)  # checked in __init__
        logits = nn.functional.linear(a.mean(dim=(2, 3)), head.weight, head.bias)
        cls = logits.argmax(dim=1) if classes is None else classes
        if self.method == "lpcam":
            return logits, self.lpcam(a, self.lpcam_vectors, self.lpcam_has_bg, cls)
        return logits, self.cam_head(a, head.weight, cls)
