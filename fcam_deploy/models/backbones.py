"""Backbone table: every encoder fcam-deploy knows, built from torchvision / timm modules.

Each entry of :data:`BACKBONES` is a :class:`BackboneSpec` that fixes, in one place,

* how the trunk is built (a torchvision or timm model, then the WSOL modifications of docs/method.md §1.2),
* the decoder taps ``f1..fD`` (module names inside the trunk, with channels and output strides, shallow→deep;
  the image-resolution feature ``f0`` is never a tap, docs/method.md §7.3),
* the CAM target layer (``cam_layer``, a module name inside :class:`~fcam_deploy.models.CAMClassifier`, so a
  forward hook on it sees the CAM features ``A``; it is always the last tap),
* the U-Net decoder channels and whether the decoder has a center block (VGG16 only).

Trunks are the original torchvision/timm modules, run in order by :class:`Trunk`; no backbone layer is written
here. Module names are kept, so pretrained state dicts of the unmodified torchvision/timm model load by name.

Output strides (at 224×224 input):

=====================  ======  ==========  ==================================================================
arch                   stride  A at 224    WSOL modification
=====================  ======  ==========  ==================================================================
resnet50               8       2048×28×28  layer3 and layer4 stride 1 (official F-CAM)
vgg16                  8       1024×28×28  pool4, pool5 removed; conv6 3×3 512→1024 + ReLU appended
inceptionv3            ≈8      1024×29×29  all 3×3 convs/max-pools padded 1, max-pools ceil_mode, Mixed_6a
                                           stride 1, SPG_A3_1b/2b appended; Mixed_7*, aux head removed
resnet18               16      512×14×14   layer4 stride 1 (the wsolevaluation ResNet choice)
mobilenetv3_large      16      960×14×14   torchvision ``dilated=True`` (last stage dilated)
efficientnet_lite0     16      1280×14×14  timm ``output_stride=16`` (stages 6–7 dilated)
resnet18_s8            8       128×(S/8)²  demo: ResNet18 trunk up to layer2
efficientnet_lite0_s8  8       40×(S/8)²   demo: Lite0 trunk up to stage 3 (blocks.2)
efficientnet_lite0_s16 16      112×(S/16)² demo: Lite0 trunk up to stage 5 (blocks.4)
=====================  ======  ==========  ==================================================================

Edge backbones use stride 16: the 14×14 CAM of the standard WSOL benchmarks (wsolevaluation) at a fraction of the
cost of stride 8 (for ResNet18, stride 8 would multiply the encoder MACs by ≈4). Decoder rule (same as the
paper's): one U-Net block per tap, deep→shallow, skips = the taps below the deepest, last block without skip;
channels = the last ``D`` entries of the paper's depth-5 series (256, 128, 64, 32, 16), so a block whose output is
at stride ``s`` has the width the ResNet50 decoder has at that stride; center block only for VGG16 (whose decoder
is the paper's (256, 128, 64)).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from torch import Tensor, nn

from fcam_deploy.errors import ConfigError

if TYPE_CHECKING:
    from torchvision.models.inception import InceptionB

__all__ = [
    "BACKBONES",
    "BackboneSpec",
    "Tap",
    "Trunk",
    "build_trunk",
    "get_spec",
]

PAPER_DECODER_CHANNELS: tuple[int, ...] = (256, 128, 64, 32, 16)


@dataclass(frozen=True)
class Tap:
    """One decoder feature tap.

    Attributes:
        name: module name inside the trunk (a step of its plan) whose output is the feature.
        channels: channels of that output.
        stride: spatial stride of that output w.r.t. the input (nominal; Inception's 57/29 grids are ceil-mode).
    """

    name: str
    channels: int
    stride: int


@dataclass(frozen=True)
class BackboneSpec:
    """Everything fixed about one backbone.

    Attributes:
        name: table key.
        source: what it is built from (for humans and reports).
        factory: ``factory() -> nn.Module`` builds the *unmodified* torchvision/timm model (random init, no
            download); ``pretrained`` state dicts are keyed for this model.
        wsol: ``wsol(model) -> None`` applies the WSOL modifications in place (after pretrained loading).
        plan: module names of the trunk run in this order (dotted paths are allowed, e.g. ``features.3``).
        taps: decoder taps f1..fD, shallow→deep; the last one is the CAM features ``A``.
        decoder_channels: U-Net block widths, deep→shallow, one per tap.
        center: whether the decoder has a center block (two 3×3 conv-BN-ReLU, C→C) on the deepest feature.
        output_stride: stride of ``A`` (nominal).
        mean, std: input normalisation the pretrained weights expect (the F-CAM recipe uses ImageNet mean/std for
            every backbone; these are the *pretraining* values, used by the ImageNet checks).
        pretrained_format: ``"torchvision"``, ``"timm"`` or ``"efficientnet_lite"`` (keys of the original
            unmaintained ``efficientnet-lite-pytorch`` package, converted on load).
    """

    name: str
    source: str
    factory: Callable[[], nn.Module]
    wsol: Callable[[nn.Module], None]
    plan: tuple[str, ...]
    taps: tuple[Tap, ...]
    decoder_channels: tuple[int, ...]
    center: bool
    output_stride: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    pretrained_format: str

    @property
    def cam_channels(self) -> int:
        """Channels ``C`` of the CAM features ``A`` (= input features of the linear head)."""
        return self.taps[-1].channels

    @property
    def cam_layer(self) -> str:
        """Module name of ``A`` inside :class:`CAMClassifier` (for forward hooks)."""
        return "backbone." + self.taps[-1].name

    @property
    def depth(self) -> int:
        """Number of decoder taps D."""
        return len(self.taps)


# ----------------------------------------------------------------------------------------------- the trunk


class Trunk(nn.Module):
    """Runs the top-level modules of a torchvision/timm model in a fixed order and returns the tap outputs.

    The children of ``model`` that the plan needs are registered under their own names (so ``trunk.layer4`` is
    torchvision's ``layer4`` and state-dict keys match the original model's); unused children (``fc``,
    ``classifier``, ``avgpool``, aux heads, dropped stages) are discarded.

    Args:
        model: the (already WSOL-modified) torchvision/timm model.
        plan: module names run in order; each gets the previous output.
        taps: the plan steps whose outputs are returned, in plan order.

    Shapes: ``forward(x: (N, 3, H, W) float) -> list[(N, C_i, h_i, w_i)]``, one per tap, shallow→deep.
    """

    def __init__(self, model: nn.Module, plan: Sequence[str], taps: Sequence[str]) -> None:
        super().__init__()
        plan = tuple(plan)
        missing = [t for t in taps if t not in plan]
        if missing:
            raise ConfigError(f"taps {missing} are not steps of the trunk plan {plan}")
        roots = {p.split(".")[0] for p in plan}
        for name, child in model.named_children():
            if name in roots:
                self.add_module(name, child)
                if name not in plan:  # only some sub-modules run (e.g. timm ``blocks.0``..``blocks.2``)
                    used = {p.split(".")[1] for p in plan if p.startswith(name + ".")}
                    for sub in [s for s, _ in child.named_children() if s not in used]:
                        delattr(child, sub)
        for p in plan:
            self.get_submodule(p)  # raises AttributeError early on a bad table entry
        self.plan: tuple[str, ...] = plan
        self.tap_names: tuple[str, ...] = tuple(taps)
        self._tap_index = frozenset(i for i, p in enumerate(plan) if p in set(taps))

    def forward(self, x: Tensor) -> list[Tensor]:
        outs: list[Tensor] = []
        for i, name in enumerate(self.plan):
            x = self.get_submodule(name)(x)
            if i in self._tap_index:
                outs.append(x)
        return outs


_M = TypeVar("_M", bound=nn.Module)


def _expect(module: object, cls: type[_M]) -> _M:
    """``module`` as a ``cls``: the WSOL edits below rewrite torchvision modules of a known class."""
    if not isinstance(module, cls):
        raise TypeError(f"expected a {cls.__name__}, got {type(module).__name__}")
    return module


# ----------------------------------------------------------------------------------------------- ResNets


def _resnet50() -> nn.Module:
    from torchvision.models import resnet50

    return resnet50(weights=None)


def _resnet18() -> nn.Module:
    from torchvision.models import resnet18

    return resnet18(weights=None)


def _resnet_stride1(layer: nn.Module) -> None:
    """Set the first block of a torchvision ResNet stage to stride 1 (conv and downsample)."""
    block = _expect(layer, nn.Sequential)[0]
    for conv in (getattr(block, "conv1", None), getattr(block, "conv2", None)):
        if conv is not None and conv.stride != (1, 1):
            conv.stride = (1, 1)
    downsample = block.downsample
    if downsample is not None:
        _expect(_expect(downsample, nn.Sequential)[0], nn.Conv2d).stride = (1, 1)


def _resnet_l3l4_stride1(model: nn.Module) -> None:
    _resnet_stride1(model.get_submodule("layer3"))
    _resnet_stride1(model.get_submodule("layer4"))


def _resnet_l4_stride1(model: nn.Module) -> None:
    _resnet_stride1(model.get_submodule("layer4"))


def _noop(model: nn.Module) -> None:
    return None


# ----------------------------------------------------------------------------------------------- VGG16

# torchvision vgg16.features indices: pool4 = 23, pool5 = 30.
_VGG16_DROP = (23, 30)


def _vgg16() -> nn.Module:
    from torchvision.models import vgg16

    return vgg16(weights=None)


def _vgg16_wsol(model: nn.Module) -> None:
    """Remove pool4/pool5 (renumbering like the official ordered remap), append conv6 512→1024 + ReLU."""
    kept = [m for i, m in enumerate(_expect(model.get_submodule("features"), nn.Sequential)) if i not in _VGG16_DROP]
    model.features = nn.Sequential(*kept)
    conv6 = nn.Conv2d(512, 1024, kernel_size=3, padding=1)
    nn.init.kaiming_normal_(conv6.weight, mode="fan_out", nonlinearity="relu")
    if conv6.bias is not None:  # always (bias=True); narrows the Optional
        nn.init.zeros_(conv6.bias)
    model.conv6 = conv6
    model.relu = nn.ReLU(inplace=False)
    del model.classifier, model.avgpool


# after removing pool4 the features Sequential has 29 modules: conv1 block ends at 3, conv2 at 8, conv3 at 15.
_VGG16_PLAN = tuple(f"features.{i}" for i in range(29)) + ("conv6", "relu")


# ----------------------------------------------------------------------------------------------- InceptionV3


def _inception_b_stride1_cls() -> type[InceptionB]:
    from torchvision.models.inception import InceptionB

    class InceptionBStride1(InceptionB):
        """torchvision InceptionB (Mixed_6a) whose two stride-2 convs and max-pool run at stride 1, pad 1."""

        def _forward(self, x: Tensor) -> list[Tensor]:
            return [
                self.branch3x3(x),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                nn.functional.max_pool2d(x, kernel_size=3, stride=1, padding=1),
            ]

    return InceptionBStride1


def _inceptionv3() -> nn.Module:
    from torchvision.models import inception_v3

    return inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=False)


def _inceptionv3_wsol(model: nn.Module) -> None:
    """WSOL InceptionV3 of docs/method.md §1.2 on torchvision modules (weights already loaded)."""
    old = model.get_submodule("Mixed_6a")
    new = _inception_b_stride1_cls()(288)
    new.load_state_dict(old.state_dict())
    for conv in (new.get_submodule("branch3x3.conv"), new.get_submodule("branch3x3dbl_3.conv")):
        _expect(conv, nn.Conv2d).stride = (1, 1)
    model.Mixed_6a = new
    # the official encoder wrapper forces padding (1, 1) on every 3×3 conv and every max-pool; the
    # wsolevaluation pools are ceil_mode=True (gives 112→57→29).
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3):
            m.padding = (1, 1)
        elif isinstance(m, nn.MaxPool2d):
            m.padding = 1
            m.ceil_mode = True
    for name in ("AuxLogits", "Mixed_7a", "Mixed_7b", "Mixed_7c", "avgpool", "dropout", "fc"):
        if hasattr(model, name):
            delattr(model, name)
    for name, cin in (("SPG_A3_1b", 768), ("SPG_A3_2b", 1024)):
        conv = nn.Conv2d(cin, 1024, kernel_size=3, padding=1)
        nn.init.xavier_uniform_(conv.weight)
        if conv.bias is not None:  # always (bias=True); narrows the Optional
            nn.init.zeros_(conv.bias)
        setattr(model, name, nn.Sequential(nn.Dropout(0.5), conv, nn.ReLU(inplace=False)))


_INCEPTION_PLAN = (
    "Conv2d_1a_3x3",
    "Conv2d_2a_3x3",
    "Conv2d_2b_3x3",
    "maxpool1",
    "Conv2d_3b_1x1",
    "Conv2d_4a_3x3",
    "maxpool2",
    "Mixed_5b",
    "Mixed_5c",
    "Mixed_5d",
    "Mixed_6a",
    "Mixed_6b",
    "Mixed_6c",
    "Mixed_6d",
    "Mixed_6e",
    "SPG_A3_1b",
    "SPG_A3_2b",
)


# ----------------------------------------------------------------------------------------------- MobileNetV3


def _mobilenetv3_large() -> nn.Module:
    from torchvision.models import mobilenet_v3_large

    return mobilenet_v3_large(weights=None, dilated=True)


_MBV3_PLAN = tuple(f"features.{i}" for i in range(17))


# ----------------------------------------------------------------------------------------------- EfficientNet-Lite0

# TF-style 'same' padding and BN eps 1e-3 like the TF original and the ``efficientnet-lite-pytorch`` port the
# shipped weights come from (``tf_`` variant of timm); BN momentum 0.01 = 1 - 0.99 of that port.
_LITE0_BN_MOMENTUM = 0.01


def _lite0(output_stride: int) -> nn.Module:
    import timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1000, output_stride=output_stride)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = _LITE0_BN_MOMENTUM
    return model


def _lite0_os16() -> nn.Module:
    return _lite0(16)


def _lite0_os32() -> nn.Module:
    return _lite0(32)


_LITE0_STEM = ("conv_stem", "bn1")


def _lite0_blocks(n: int) -> tuple[str, ...]:
    return tuple(f"blocks.{i}" for i in range(n))


# ----------------------------------------------------------------------------------------------- the table

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_HALF = (0.5, 0.5, 0.5)


def _tail(depth: int) -> tuple[int, ...]:
    return PAPER_DECODER_CHANNELS[-depth:]


_RESNET_STEM = ("conv1", "bn1", "relu", "maxpool")

_TABLE: dict[str, BackboneSpec] = {
    "resnet50": BackboneSpec(
        name="resnet50",
        source="torchvision resnet50, layer3+layer4 stride 1",
        factory=_resnet50,
        wsol=_resnet_l3l4_stride1,
        plan=_RESNET_STEM + ("layer1", "layer2", "layer3", "layer4"),
        taps=(
            Tap("relu", 64, 2),
            Tap("layer1", 256, 4),
            Tap("layer2", 512, 8),
            Tap("layer3", 1024, 8),
            Tap("layer4", 2048, 8),
        ),
        decoder_channels=PAPER_DECODER_CHANNELS,
        center=False,
        output_stride=8,
        mean=_IMAGENET_MEAN,
        std=_IMAGENET_STD,
        pretrained_format="torchvision",
    ),
    "vgg16": BackboneSpec(
        name="vgg16",
        source="torchvision vgg16 features, pool4/pool5 removed, conv6 512->1024 + ReLU",
        factory=_vgg16,
        wsol=_vgg16_wsol,
        plan=_VGG16_PLAN,
        taps=(Tap("features.8", 128, 2), Tap("features.15", 256, 4), Tap("relu", 1024, 8)),
        decoder_channels=(256, 128, 64),
        center=True,
        output_stride=8,
        mean=_IMAGENET_MEAN,
        std=_IMAGENET_STD,
        pretrained_format="torchvision",
    ),
    "inceptionv3": BackboneSpec(
        name="inceptionv3",
        source="torchvision inception_v3, WSOL variant (Mixed_6a stride 1, forced padding, SPG blocks)",
        factory=_inceptionv3,
        wsol=_inceptionv3_wsol,
        plan=_INCEPTION_PLAN,
        taps=(
            Tap("Conv2d_2b_3x3", 64, 2),
            Tap("Conv2d_3b_1x1", 80, 4),
            Tap("Mixed_5d", 288, 8),
            Tap("Mixed_6e", 768, 8),
            Tap("SPG_A3_2b", 1024, 8),
        ),
        decoder_channels=PAPER_DECODER_CHANNELS,
        center=False,
        output_stride=8,
        mean=_IMAGENET_MEAN,
        std=_IMAGENET_STD,
        pretrained_format="torchvision",
    ),
    "resnet18": BackboneSpec(
        name="resnet18",
        source="torchvision resnet18, layer4 stride 1",
        factory=_resnet18,
        wsol=_resnet_l4_stride1,
        plan=_RESNET_STEM + ("layer1", "layer2", "layer3", "layer4"),
        taps=(
            Tap("relu", 64, 2),
            Tap("layer1", 64, 4),
            Tap("layer2", 128, 8),
            Tap("layer3", 256, 16),
            Tap("layer4", 512, 16),
        ),
        decoder_channels=PAPER_DECODER_CHANNELS,
        center=False,
        output_stride=16,
        mean=_IMAGENET_MEAN,
        std=_IMAGENET_STD,
        pretrained_format="torchvision",
    ),
    "mobilenetv3_large": BackboneSpec(
        name="mobilenetv3_large",
        source="torchvision mobilenet_v3_large(dilated=True) features",
        factory=_mobilenetv3_large,
        wsol=_noop,
        plan=_MBV3_PLAN,
        taps=(
            Tap("features.1", 16, 2),
            Tap("features.3", 24, 4),
            Tap("features.6", 40, 8),
            Tap("features.12", 112, 16),
            Tap("features.16", 960, 16),
        ),
        decoder_channels=PAPER_DECODER_CHANNELS,
        center=False,
        output_stride=16,
        mean=_IMAGENET_MEAN,
        std=_IMAGENET_STD,
        pretrained_format="torchvision",
    ),
    "efficientnet_lite0": BackboneSpec(
        name="efficientnet_lite0",
        source="timm tf_efficientnet_lite0, output_stride 16 (TF 'same' padding, BN eps 1e-3)",
        factory=_lite0_os16,
        wsol=_noop,
        plan=_LITE0_STEM + _lite0_blocks(7) + ("conv_head", "bn2"),
        taps=(
            Tap("blocks.0", 16, 2),
            Tap("blocks.1", 24, 4),
            Tap("blocks.2", 40, 8),
            Tap("blocks.4", 112, 16),
            Tap("bn2", 1280, 16),
        ),
        decoder_channels=PAPER_DECODER_CHANNELS,
        center=False,
        output_stride=16,
        mean=_HALF,
        std=_HALF,
        pretrained_format="efficientnet_lite",
    ),
    "resnet18_s8": BackboneSpec(
        name="resnet18_s8",
        source="torchvision resnet18 trunk up to layer2 (CPU demo)",
        factory=_resnet18,
        wsol=_noop,
        plan=_RESNET_STEM + ("layer1", "layer2"),
        taps=(Tap("relu", 64, 2), Tap("layer1", 64, 4), Tap("layer2", 128, 8)),
        decoder_channels=_tail(3),
        center=False,
        output_stride=8,
        mean=_IMAGENET_MEAN,
        std=_IMAGENET_STD,
        pretrained_format="torchvision",
    ),
    "efficientnet_lite0_s8": BackboneSpec(
        name="efficientnet_lite0_s8",
        source="timm tf_efficientnet_lite0 trunk up to blocks.2 (CPU demo)",
        factory=_lite0_os32,
        wsol=_noop,
        plan=_LITE0_STEM + _lite0_blocks(3),
        taps=(Tap("blocks.0", 16, 2), Tap("blocks.1", 24, 4), Tap("blocks.2", 40, 8)),
        decoder_channels=_tail(3),
        center=False,
        output_stride=8,
        mean=_HALF,
        std=_HALF,
        pretrained_format="efficientnet_lite",
    ),
    "efficientnet_lite0_s16": BackboneSpec(
        name="efficientnet_lite0_s16",
        source="timm tf_efficientnet_lite0 trunk up to blocks.4 (CPU demo)",
        factory=_lite0_os32,
        wsol=_noop,
        plan=_LITE0_STEM + _lite0_blocks(5),
        taps=(
            Tap("blocks.0", 16, 2),
            Tap("blocks.1", 24, 4),
            Tap("blocks.2", 40, 8),
            Tap("blocks.4", 112, 16),
        ),
        decoder_channels=_tail(4),
        center=False,
        output_stride=16,
        mean=_HALF,
        std=_HALF,
        pretrained_format="efficientnet_lite",
    ),
}

#: The backbone table (read-only). Keys are the ``arch`` names used everywhere (configs, checkpoints, CLI).
BACKBONES: Mapping[str, BackboneSpec] = MappingProxyType(_TABLE)


def get_spec(arch: str) -> BackboneSpec:
    """Return the :class:`BackboneSpec` of ``arch`` or raise :class:`ConfigError` listing the known names."""
    try:
        return BACKBONES[arch]
    except KeyError:
        raise ConfigError(f"unknown backbone {arch!r}; choose one of {', '.join(sorted(BACKBONES))}") from None


def build_trunk(arch: str, state_dict: Mapping[str, Any] | None = None) -> Trunk:
    """Build the WSOL trunk of ``arch``.

    Args:
        arch: a key of :data:`BACKBONES`.
        state_dict: optional pretrained weights already converted to the *unmodified* factory model's keys
            (see :mod:`fcam_deploy.models.pretrained`). Every trunk tensor must be present (BN
            ``num_batches_tracked`` excepted, reset to 0); keys of modules the WSOL trunk drops (``fc``,
            ``classifier``, aux heads) may be absent; unknown keys and shape mismatches raise
            :class:`~fcam_deploy.errors.CheckpointError`. Tensors are cast to float32 and assigned (not copied).

    Returns:
        The trunk, in train mode, on CPU, float32.
    """
    spec = get_spec(arch)
    if state_dict is None:
        model = spec.factory()
    else:
        # Build the structure without allocating/initialising storage, then assign the pretrained tensors.
        with torch.device("meta"):
            model = spec.factory()
        _load_into_factory_model(model, state_dict, arch)
    spec.wsol(model)
    trunk = Trunk(model, spec.plan, [t.name for t in spec.taps])
    left = [n for n, t in list(trunk.named_parameters()) + list(trunk.named_buffers()) if t.is_meta]
    if state_dict is not None and left and torch.empty(0).device.type != "meta":
        from fcam_deploy.errors import CheckpointError

        raise CheckpointError(f"pretrained weights for {arch!r} left {len(left)} tensors unset (first: {left[:3]})")
    return trunk


def _load_into_factory_model(model: nn.Module, state_dict: Mapping[str, Any], arch: str) -> None:
    from fcam_deploy.errors import CheckpointError

    own = model.state_dict()
    unknown = sorted(k for k in state_dict if k not in own)
    if unknown:
        raise CheckpointError(
            f"pretrained weights for {arch!r} hold {len(unknown)} keys the model does not have "
            f"(first: {unknown[:3]}); is this the right file for this backbone?"
        )
    missing = sorted(k for k in own if k not in state_dict)
    # A file may legitimately lack the classification layer and heads the WSOL trunk drops anyway, and BN
    # ``num_batches_tracked`` counters (absent from older torchvision files; they are reset to 0).
    droppable = ("fc.", "classifier.", "AuxLogits.", "Mixed_7")
    real_missing = [k for k in missing if not k.startswith(droppable) and not k.endswith("num_batches_tracked")]
    if real_missing:
        raise CheckpointError(
            f"pretrained weights for {arch!r} lack {len(real_missing)} tensors (first: {real_missing[:3]})"
        )
    for k, v in state_dict.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise CheckpointError(
                f"pretrained tensor {k!r} for {arch!r} has shape {tuple(v.shape)}, model expects {tuple(own[k].shape)}"
            )
    full = {k: v.detach().to(dtype=own[k].dtype, device="cpu") for k, v in state_dict.items()}
    for k in missing:
        if k.endswith("num_batches_tracked"):
            full[k] = torch.zeros((), dtype=torch.long)
    with torch.no_grad():
        model.load_state_dict(full, strict=False, assign=True)
