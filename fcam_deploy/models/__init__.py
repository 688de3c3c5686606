"""fcam_deploy.models: backbone table, CAM classifier, F-CAM model, checkpoints, pretrained weights.

Public API (see DESIGN.md "Models"): :data:`BACKBONES`, :class:`BackboneSpec`, :func:`build_classifier`,
:class:`CAMClassifier`, :class:`ClassifierOutput`, :class:`FCAM`, :class:`FCAMOutput`, :func:`save_checkpoint`,
:func:`load_checkpoint`, :class:`CheckpointMeta`,
:func:`efficientnet_lite0_weights_path` (the locally installed Lite0 ImageNet weights).
"""

from fcam_deploy.models.backbones import BACKBONES, BackboneSpec, Tap, Trunk, build_trunk, get_spec
from fcam_deploy.models.checkpoint import CheckpointMeta, load_checkpoint, read_checkpoint_meta, save_checkpoint
from fcam_deploy.models.classifier import CAMClassifier, ClassifierOutput, build_classifier
from fcam_deploy.models.fcam import FCAM, FCAMOutput, UNetDecoder, decoder_parameter_count
from fcam_deploy.models.pretrained import (
    efficientnet_lite0_weights_path,
    imagenet_efficientnet_lite0,
    load_pretrained_state_dict,
)

__all__ = [
    "BACKBONES",
    "FCAM",
    "BackboneSpec",
    "CAMClassifier",
    "CheckpointMeta",
    "ClassifierOutput",
    "FCAMOutput",
    "Tap",
    "Trunk",
    "UNetDecoder",
    "build_classifier",
    "build_trunk",
    "decoder_parameter_count",
    "efficientnet_lite0_weights_path",
    "get_spec",
    "imagenet_efficientnet_lite0",
    "load_checkpoint",
    "load_pretrained_state_dict",
    "read_checkpoint_meta",
    "save_checkpoint",
]
