"""Class-based CAM extractors (TorchCAM spirit): CAM, GradCAM, GradCAM++, XGradCAM, LayerCAM, ScoreCAM.

Usage::

    with GradCAM(model, "layer4") as extractor:      # nn.Module or dotted name from named_modules()
        res = extractor(images, classes=labels)      # CamResult(lowres (N,h,w), full (N,H,W)), on model device

Guarantees of every call: the model runs in eval mode and every submodule's ``training`` flag is restored
afterwards; ``requires_grad`` flags and parameters' ``.grad`` are left exactly as they were (gradients are taken
w.r.t. the captured activation only, never accumulated into parameters); the one forward hook lives only for
the duration of the forward pass and is removed in a ``finally`` block (also when the model raises). The
extractor keeps no tensors between calls.

Gradient methods have two implementations, chosen by ``impl``:

- ``"autograd"``: any target layer; ``g = d(sum_n y_{n,c_n}) / dA`` with ``torch.autograd.grad``.
- ``"closed_form"``: the target layer feeds GAP -> ``head`` (the CAMClassifier case); no backward pass
  (:mod:`fcam_deploy.cams.closed_form`). The extractor checks on every batch that the logits really are
  ``GAP(A) @ W.T + b`` and raises :class:`~fcam_deploy.errors.InputError` otherwise.
- ``"auto"`` (default): closed form when the target layer is ``model.cam_layer`` and the model has a ``head``
  and the check passes, else autograd.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn
from typing_extensions import Self

from fcam_deploy.cams._core import (
    CamResult,
    Normalize,
    Upsample,
    channel_weighted_sum,
    check_choice,
    finalize_maps,
    logits_of,
    model_device_dtype,
    preserve_model_state,
    resolve_classes,
    resolve_head,
    resolve_layer,
    validate_images,
)
from fcam_deploy.cams.closed_form import CLOSED_FORM_HEADS
from fcam_deploy.cams.gradient import GRADIENT_FORMULAS
from fcam_deploy.errors import InputError

__all__ = ["CAM", "BaseExtractor", "GradCAM", "GradCAMpp", "Impl", "LayerCAM", "ScoreCAM", "XGradCAM"]

logger = logging.getLogger(__name__)

Impl = Literal["auto", "closed_form", "autograd"]


class BaseExtractor:
    """Common machinery. Subclasses implement :meth:`_raw_maps`.

    Args:
        model: the classifier. Its forward returns logits ``(N, K)``, or an object with ``.logits``, or a tuple
            starting with the logits.
        target_layer: ``nn.Module`` of ``model`` or its dotted name; ``None`` -> ``model.cam_layer``.
        upsample: ``"bilinear"`` (align_corners=False, DESIGN/F-CAM) or ``"bicubic_cv2"`` (wsolevaluation).
        normalize: ``"minmax"`` (protocol, NaN/constant -> 0) or ``"gradcam"`` (the ``grad-cam`` package's
            ``scale_cam_image`` with its 1e-7 eps, applied before and after the resize).
    """

    method: ClassVar[str] = ""

    def __init__(
        self,
        model: nn.Module,
        target_layer: nn.Module | str | None = None,
        *,
        upsample: Upsample = "bilinear",
        normalize: Normalize = "minmax",
    ) -> None:
        if not isinstance(model, nn.Module):
            raise InputError(f"model must be an nn.Module, got {type(model).__name__}")
        check_choice("upsample", upsample, ("bilinear", "bicubic_cv2"))
        check_choice("normalize", normalize, ("minmax", "gradcam"))
        self.model = model
        self.layer_name, self.layer = resolve_layer(model, target_layer)
        self.upsample: Upsample = upsample
        self.normalize: Normalize = normalize
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    # -- context manager -------------------------------------------------------------------------------------
    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove_hooks()  # never swallows the exception

    def remove_hooks(self) -> None:
        """Remove every hook this extractor registered (idempotent; calls already do it in ``finally``)."""
        while self._handles:
            self._handles.pop().remove()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(layer={self.layer_name!r}, upsample={self.upsample!r})"

    # -- the call --------------------------------------------------------------------------------------------
    def __call__(self, images: Tensor, classes: Any = None) -> CamResult:
        """Maps of ``classes`` (ground truth when given, else top-1) for a batch.

        Args:
            images: ``(N, 3, H, W)`` float, normalised; moved to the model's device and dtype.
            classes: ``None`` (predicted), an int, a sequence of N ints or an ``(N,)`` integer tensor.

        Returns:
            :class:`CamResult` with ``lowres (N, h, w)`` and ``full (N, H, W)`` in [0, 1] on the model's device.

        Raises:
            InputError: bad images/classes, a target layer that does not run (or runs twice) in the forward, or a
                closed form requested where it does not apply.
        """
        device, dtype = model_device_dtype(self.model)
        x = validate_images(images, device, dtype)
        with preserve_model_state(self.model):
            raw, logits, cls = self._raw_maps(x, classes)
        low, full = finalize_maps(raw.detach(), (x.shape[-2], x.shape[-1]), self.upsample, self.normalize)
        return CamResult(lowres=low, full=full, classes=cls, logits=logits.detach(), method=self.method)

    def _raw_maps(self, x: Tensor, classes: Any) -> tuple[Tensor, Tensor, Tensor]:  # pragma: no cover
        raise NotImplementedError

    # -- helpers ---------------------------------------------------------------------------------------------
    def _forward_capture(self, x: Tensor, *, for_grad: bool) -> tuple[Tensor, Tensor]:
        """Run the model once with a forward hook on the target layer; return ``(A, logits)``.

        With ``for_grad`` the hook swaps the layer's output for a clone of a fresh leaf that requires grad, so
        ``autograd.grad(score, A)`` works even for frozen models and never touches parameter ``.grad``; without
        it the forward runs under ``no_grad`` and ``A`` is a copy (later in-place ops cannot alter it).
        """
        store: list[Tensor] = []

        def hook(_mod: nn.Module, _inp: Any, out: Any) -> Any:
            if not isinstance(out, Tensor) or out.ndim != 4:
                raise InputError(
                    f"target layer {self.layer_name!r} must output a (N, C, h, w) tensor, got "
                    f"{type(out).__name__}{tuple(out.shape) if isinstance(out, Tensor) else ''}"
                )
            if store:
                raise InputError(
                    f"target layer {self.layer_name!r} ran more than once in one forward pass "
                    "(fix: target a module that is used exactly once)"
                )
            if for_grad:
                leaf = out.detach().requires_grad_(True)
                store.append(leaf)
                return leaf.clone()
            store.append(out.detach().clone())
            return None

        self._handles.append(self.layer.register_forward_hook(hook))
        try:
            ctx = torch.enable_grad() if for_grad else torch.no_grad()
            with ctx:
                logits = logits_of(self.model(x))
        finally:
            self.remove_hooks()
        if not store:
            raise InputError(f"target layer {self.layer_name!r} did not run during the forward pass")
        return store[0], logits

    def _num_classes(self, logits: Tensor) -> int:
        return int(logits.shape[1])


class _HeadMethod(BaseExtractor):
    """Methods with a closed form on a GAP -> Linear head (CAM and the gradient methods)."""

    _needs_grad: ClassVar[bool] = True

    def __init__(
        self,
        model: nn.Module,
        target_layer: nn.Module | str | None = None,
        *,
        head: nn.Linear | str | None = None,
        impl: Impl = "auto",
        upsample: Upsample = "bilinear",
        normalize: Normalize = "minmax",
    ) -> None:
        super().__init__(model, target_layer, upsample=upsample, normalize=normalize)
        check_choice("impl", impl, ("auto", "closed_form", "autograd"))
        if not self._needs_grad:
            impl = "closed_form"  # CAM has no gradient: its only form is the closed one
        self.impl: Impl = impl
        self._head_arg = head
        self._closed = CLOSED_FORM_HEADS[self.method]()

    def _head(self) -> nn.Linear | None:
        try:
            return resolve_head(self.model, self._head_arg)
        except InputError:
            if self.impl == "closed_form" or not self._needs_grad:
                raise
            return None

    def _use_closed_form(self, head: nn.Linear | None) -> bool:
        if self.impl == "closed_form":
            return True
        if self.impl == "autograd" or head is None:
            return False
        return self._head_arg is not None or self.layer_name == getattr(self.model, "cam_layer", None)

    def _raw_maps(self, x: Tensor, classes: Any) -> tuple[Tensor, Tensor, Tensor]:
        head = self._head()
        if self._use_closed_form(head):
            assert head is not None
            a, logits = self._forward_capture(x, for_grad=False)
            ok, detail = _logits_match_gap_linear(a, head, logits)
            if ok:
                cls = resolve_classes(classes, x.shape[0], self._num_classes(logits), logits)
                with torch.no_grad():
                    raw = self._closed(a, head.weight, cls)
                return raw, logits, cls
            if self.impl == "closed_form" or not self._needs_grad:
                raise InputError(
                    f"{self.method}: the logits are not GAP({self.layer_name}) -> head ({detail}); the closed form "
                    "does not apply (fix: target the layer that feeds global average pooling, pass head=, or use "
                    "impl='autograd')"
                )
            logger.warning("%s: closed form does not apply (%s); falling back to autograd", self.method, detail)
        a, logits = self._forward_capture(x, for_grad=True)
        cls = resolve_classes(classes, x.shape[0], self._num_classes(logits), logits)
        with torch.enable_grad():  # the caller may be under no_grad
            score = logits.gather(1, cls[:, None]).sum()
            if not score.requires_grad:
                raise InputError(f"{self.method}: the logits do not depend on target layer {self.layer_name!r}")
            (g,) = torch.autograd.grad(score, a, allow_unused=True)
        if g is None:
            raise InputError(f"{self.method}: the logits do not depend on target layer {self.layer_name!r}")
        with torch.no_grad():
            raw = GRADIENT_FORMULAS[self.method](a.detach(), g)
        return raw, logits.detach(), cls


def _logits_match_gap_linear(a: Tensor, head: nn.Linear, logits: Tensor) -> tuple[bool, str]:
    """Whether ``logits == mean_ij(A) @ W.T + b`` (up to float rounding)."""
    if a.shape[1] != head.in_features:
        return False, f"layer has {a.shape[1]} channels, head expects {head.in_features}"
    if logits.shape[1] != head.out_features:
        return False, f"logits have {logits.shape[1]} classes, head has {head.out_features}"
    with torch.no_grad():
        expect = nn.functional.linear(a.mean(dim=(2, 3)).to(head.weight.dtype), head.weight, head.bias)
        err = float((expect - logits.detach().to(expect.dtype)).abs().max())
        scale = float(expect.abs().max()) + 1.0
    tol = (1e-4 if expect.dtype != torch.float64 else 1e-9) * scale
    return err <= tol, f"max |difference| {err:.3g}"


class CAM(_HeadMethod):
    """CAM (Zhou et al., CVPR 2016) as wsolevaluation and F-CAM use it:

    ``M_c = sum_k W[c,k] A_k`` (no ReLU, no bias), with W the head applied after GAP of the target layer.
    """

    method = "cam"
    _needs_grad = False


class GradCAM(_HeadMethod):
    """GradCAM (Selvaraju et al., ICCV 2017): ``ReLU(sum_k mean_ij(g_k) A_k)``."""

    method = "gradcam"


class GradCAMpp(_HeadMethod):
    """GradCAM++ (Chattopadhay et al., WACV 2018) with the ``grad-cam`` package's alpha and eps (1e-6)."""

    method = "gradcampp"


class XGradCAM(_HeadMethod):
    """XGradCAM (Fu et al., BMVC 2020): ``w_k = sum_ij g_k A_k / (S_k + 1e-7)``."""

    method = "xgradcam"


class LayerCAM(_HeadMethod):
    """LayerCAM (Jiang et al., TIP 2021): ``ReLU(sum_k ReLU(g_k) * A_k)`` element-wise."""

    method = "layercam"


class ScoreCAM(BaseExtractor):
    """ScoreCAM (Wang et al., CVPRW 2020) as the ``grad-cam`` package computes it.

    Each channel ``A_k`` is upsampled to the input size (bilinear, **align_corners=True**, the package's
    ``UpsamplingBilinear2d``), min-max scaled with ``/(max - min + 1e-8)``, multiplied into the input; the raw
    logit of the target class on each masked image is its score; ``w = softmax_k(scores)``;
    ``ReLU(sum_k w_k A_k)``. C extra forward passes per image, in chunks of ``batch_size`` (default 16, as the
    package).
    """

    method = "scorecam"

    def __init__(
        self,
        model: nn.Module,
        target_layer: nn.Module | str | None = None,
        *,
        batch_size: int = 16,
        upsample: Upsample = "bilinear",
        normalize: Normalize = "minmax",
    ) -> None:
        super().__init__(model, target_layer, upsample=upsample, normalize=normalize)
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise InputError(f"batch_size must be a positive int, got {batch_size!r}")
        self.batch_size = batch_size

    def _raw_maps(self, x: Tensor, classes: Any) -> tuple[Tensor, Tensor, Tensor]:
        a, logits = self._forward_capture(x, for_grad=False)
        cls = resolve_classes(classes, x.shape[0], self._num_classes(logits), logits)
        n, c = a.shape[:2]
        weights = torch.empty(n, c, dtype=a.dtype, device=a.device)
        size = (x.shape[-2], x.shape[-1])
        with torch.no_grad():
            for i in range(n):
                scores = []
                for s in range(0, c, self.batch_size):  # masks built per chunk: C x H x W never materialised
                    up = nn.functional.interpolate(
                        a[i : i + 1, s : s + self.batch_size], size=size, mode="bilinear", align_corners=True
                    )[0]
                    flat = up.reshape(up.shape[0], -1)
                    lo = flat.amin(dim=1)[:, None, None]
                    hi = flat.amax(dim=1)[:, None, None]
                    masks = (up - lo) / (hi - lo + 1e-8)
                    out = logits_of(self.model(x[i][None] * masks[:, None]))
                    scores.append(out[:, cls[i]])
                weights[i] = torch.softmax(torch.cat(scores).to(a.dtype), dim=0)
            raw = torch.relu(channel_weighted_sum(weights, a))
        return raw, logits, cls
