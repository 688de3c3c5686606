"""Built-in synthetic WSOL dataset: objects with a large class-shared body and a small class-specific head.

Why this design
---------------
Weakly-supervised localization exists because a classifier trained only with image labels looks at the *most
discriminative* part of an object (a bird's head) and ignores the rest (its body), so its CAM covers the object
only partially. This set reproduces that situation on purpose, with exact box and mask ground truth:

* **Classes.** Every class is the same kind of object: an elliptic *body* (about 80 % of the object's area)
  with a round *head* protruding at one end of its major axis (``head_fraction`` ~ 19 %). Body and head share
  one colour, drawn per instance from a saturated HSV range that does not depend on the class, plus a
  low-frequency texture and a few darker spots. The class is carried **only** by a dark pattern printed on the
  head (``dot``, ``ring``, ``bar``, ``eyes``, ``plus``, ``cap``, ``triangle``, ``stripes``, ``three_dots``,
  ``dark``; ``--classes K`` uses the first K). The patterns differ in shape under any rotation, so the head
  alone decides the class (no need to relate it to the body's direction). A classifier therefore needs the head alone, and its CAM
  peaks there; the body, which carries no class evidence, is what CAM misses and what F-CAM must recover.
  Every pattern is mirror-symmetric about the object's axis, so a horizontal flip never changes the class.
* **The head shares the body's colour** (only the pattern is dark), so a colour/position CRF can grow a region
  seeded on the head along the body. Backgrounds are kept **out of the body's colour range** (low saturation)
  and saturated distractors keep a hue gap to the body's hue, so the CRF's colour cut separates body from
  background (recommendation (i) of the feasibility study).
* **Objects are large**, ~25-35 % of the image (``object_area``): with a stride-8 CAM the classifier's blob
  must be smaller than the object, otherwise no partial-coverage regime exists (the study's v1/v2 failure).
* **Clutter.** Smooth coloured-noise backgrounds with luminance texture and optional stripes, 2-5 random
  distractor shapes (discs, boxes, ellipses, triangles), per-pixel noise. Scale, aspect, rotation and position
  vary per instance; with probability ``two_instance_prob`` an image holds two smaller, non-overlapping
  instances of the same class (two GT boxes, mask = union).

Measured with the defaults (300 images per size, seed 0): objects cover 30 % of the image on average
(24-38 %), the head is 20 % of the object, 16 % of the images hold two instances, and a whole-image box reaches
IoU >= 0.5 on 22 % (64 px) / 19 % (96 px) / 15 % (224 px) of the images. A scratch 8-conv CNN (stride 8) trained
3 epochs on 2000 images at 64 px with 4 classes reached 91 % test accuracy; its CAM at tau = 0.5 covered 96 % of
the head pixels but only 28 % of the body (8 classes, 4 epochs: 76 % accuracy, head 97 % vs body 29 %) -- the
partial-coverage failure F-CAM is meant to fix. Eight classes need more epochs than four.

Ground truth: the instance mask is the union of the instance's body and head pixels; each instance's GT box is
its mask's bounding box (inclusive pixel coordinates). The head (discriminative part) masks are written too,
for coverage diagnostics (CAM covers the head, misses the body).

On disk (the wsolevaluation format, DESIGN.md)::

    DIR/images/<split>/<000123>.png                     image ids are "<split>/<000123>.png"
    DIR/masks/<split>/<000123>_m<k>.png                 one binary (0/255) PNG per instance
    DIR/parts/<split>/<000123>_head.png                 union of the instances' heads (0/255)
    DIR/metadata/<split>/image_ids.txt, class_labels.txt, image_sizes.txt
    DIR/metadata/<split>/localization.txt               boxes: id,x0,y0,x1,y1 (one line per instance)
    DIR/metadata/<split>/localization_masks.txt         masks: id,mask,ignore (ignore empty)
    DIR/metadata/<split>/part_masks.txt                 id,head_png (not part of the standard format)
    DIR/metadata/class_names.txt                        pattern name per label
    DIR/metadata/synth_config.json                      the SynthConfig, counts and seed that made the set

Deterministic: every image is drawn from its own ``numpy`` generator seeded by ``(seed, split, index)``, so the
same arguments write byte-identical files in any order and with any number of worker processes (for the same
numpy / OpenCV versions on the same platform; another CPU's SIMD paths may move a rare pixel by one level).
"""

from __future__ import annotations

import colorsys
import json
import math
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fcam_deploy.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from numpy.typing import NDArray

__all__ = [
    "PATTERNS",
    "SPLITS",
    "SynthConfig",
    "SynthSample",
    "SynthSummary",
    "generate_synthetic",
    "render_sample",
]

#: Head patterns, in label order (label k uses ``PATTERNS[k]``).
PATTERNS: tuple[str, ...] = (
    "dot",
    "ring",
    "bar",
    "eyes",
    "plus",
    "cap",
    "triangle",
    "stripes",
    "three_dots",
    "dark",
)

#: Split names written by :func:`generate_synthetic`, in seeding order.
SPLITS: tuple[str, ...] = ("train", "val", "test")

_SPLIT_SEED_INDEX = {"train": 0, "val": 1, "test": 2}
_SUBDIRS = ("images", "masks", "parts", "metadata")
_SHIFT = 4  # cv2 sub-pixel drawing: coordinates carry 4 fractional bits
_SCALE = float(1 << _SHIFT)


def _pair(name: str, value: tuple[float, float], lo: float, hi: float) -> None:
    if len(value) != 2 or not (lo <= value[0] <= value[1] <= hi):
        raise ConfigError(f"SynthConfig.{name}={value!r}: need a pair lo <= hi within [{lo}, {hi}]")


@dataclass(frozen=True)
class SynthConfig:
    """Every design knob of the synthetic set (see the module docstring for the reasons).

    Ranges are ``(lo, hi)`` pairs sampled uniformly per image/instance. Colours are HSV in [0, 1] (hue in
    degrees where named so); RGB amounts are in 0-255 units.

    Attributes:
        size: image side in pixels (images are square ``size`` x ``size``).
        num_classes: number of classes, 1..len(PATTERNS); label k has head pattern ``PATTERNS[k]``.
        image_format: ``"png"`` (lossless, default) or ``"jpg"``.
        jpeg_quality: JPEG quality when ``image_format == "jpg"``.
        object_area: fraction of the image covered by a single object (body + head).
        aspect: body ellipse minor/major axis ratio.
        head_fraction: head disc area / object area (the discriminative part's share).
        head_offset: head centre position beyond the body's tip, in head radii (negative sinks it in).
        body_saturation, body_value: HSV range of the class-shared body colour.
        body_hue_class_corr: probability that the body hue is tied to the class (0 = body fully class-shared).
        body_texture: relative amplitude of the body's low-frequency brightness texture.
        body_spots: number range of darker spots on the body (class-shared clutter on the object).
        spot_darkness: spot colour = body colour x this.
        pattern_darkness: head pattern colour = body colour x this.
        two_instance_prob: probability of two instances of the class in one image.
        two_instance_area_scale: each instance's area relative to a single object's when there are two.
        margin: minimum distance of objects from the image border, as a fraction of ``size``.
        bg_saturation, bg_value: HSV range of the background base colour (low saturation: out of body range).
        bg_texture: luminance texture amplitude (RGB units, std of the smooth field).
        bg_chroma: per-channel texture amplitude (RGB units), kept small so the background stays grey-ish.
        bg_grid: range of the coarse noise grid side that is upsampled into the texture.
        stripe_prob: probability of sinusoidal luminance stripes on the background.
        stripe_amplitude: stripe amplitude range (RGB units).
        distractors: number range of distractor shapes.
        distractor_radius: distractor size range, as a fraction of ``size``.
        distractor_gray_prob: probability that a distractor is low-saturation (grey) rather than coloured.
        distractor_hue_gap: minimum hue distance (degrees) between a coloured distractor and the body.
        noise_sigma: per-pixel noise std (RGB units, triangular distribution), applied to the whole image.
        blur_sigma: Gaussian blur sigma in pixels applied before the noise (0 = none).
    """

    size: int = 224
    num_classes: int = 8
    image_format: str = "png"
    jpeg_quality: int = 95
    object_area: tuple[float, float] = (0.25, 0.35)
    aspect: tuple[float, float] = (0.55, 0.8)
    head_fraction: float = 0.19
    head_offset: float = 0.3
    body_saturation: tuple[float, float] = (0.5, 0.85)
    body_value: tuple[float, float] = (0.5, 0.9)
    body_hue_class_corr: float = 0.0
    body_texture: float = 0.12
    body_spots: tuple[int, int] = (1, 3)
    spot_darkness: float = 0.7
    pattern_darkness: float = 0.25
    two_instance_prob: float = 0.15
    two_instance_area_scale: float = 0.55
    margin: float = 0.02
    bg_saturation: tuple[float, float] = (0.0, 0.15)
    bg_value: tuple[float, float] = (0.25, 0.85)
    bg_texture: float = 28.0
    bg_chroma: float = 6.0
    bg_grid: tuple[int, int] = (3, 8)
    stripe_prob: float = 0.5
    stripe_amplitude: tuple[float, float] = (10.0, 25.0)
    distractors: tuple[int, int] = (2, 5)
    distractor_radius: tuple[float, float] = (0.05, 0.14)
    distractor_gray_prob: float = 0.3
    distractor_hue_gap: float = 60.0
    noise_sigma: float = 6.0
    blur_sigma: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or self.size < 16:
            raise ConfigError(f"SynthConfig.size={self.size!r}: need an integer >= 16")
        if not isinstance(self.num_classes, int) or not 1 <= self.num_classes <= len(PATTERNS):
            raise ConfigError(
                f"SynthConfig.num_classes={self.num_classes!r}: need an integer in 1..{len(PATTERNS)} "
                f"(one head pattern per class)"
            )
        if self.image_format not in ("png", "jpg"):
            raise ConfigError(f"SynthConfig.image_format={self.image_format!r}: use 'png' or 'jpg'")
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(f"SynthConfig.jpeg_quality={self.jpeg_quality!r}: need 1..100")
        _pair("object_area", self.object_area, 0.01, 0.6)
        _pair("aspect", self.aspect, 0.2, 1.0)
        _pair("body_saturation", self.body_saturation, 0.0, 1.0)
        _pair("body_value", self.body_value, 0.0, 1.0)
        _pair("bg_saturation", self.bg_saturation, 0.0, 1.0)
        _pair("bg_value", self.bg_value, 0.0, 1.0)
        _pair("bg_grid", self.bg_grid, 1, 64)
        _pair("stripe_amplitude", self.stripe_amplitude, 0.0, 255.0)
        _pair("distractors", self.distractors, 0, 64)
        _pair("body_spots", self.body_spots, 0, 16)
        _pair("distractor_radius", self.distractor_radius, 0.0, 1.0)
        for name in ("head_fraction",):
            v = getattr(self, name)
            if not 0.01 <= v <= 0.6:
                raise ConfigError(f"SynthConfig.{name}={v!r}: need a value in [0.01, 0.6]")
        for name in (
            "body_hue_class_corr",
            "two_instance_prob",
            "stripe_prob",
            "distractor_gray_prob",
            "spot_darkness",
            "pattern_darkness",
            "body_texture",
        ):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"SynthConfig.{name}={v!r}: need a value in [0, 1]")
        if not 0.05 <= self.two_instance_area_scale <= 1.0:
            raise ConfigError(f"SynthConfig.two_instance_area_scale={self.two_instance_area_scale!r}: need [0.05, 1]")
        if not 0.0 <= self.margin < 0.25:
            raise ConfigError(f"SynthConfig.margin={self.margin!r}: need [0, 0.25)")
        if not -1.0 <= self.head_offset <= 1.0:
            raise ConfigError(f"SynthConfig.head_offset={self.head_offset!r}: need [-1, 1]")
        for name in ("bg_texture", "bg_chroma", "noise_sigma", "blur_sigma", "distractor_hue_gap"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and v >= 0 and math.isfinite(v)):
                raise ConfigError(f"SynthConfig.{name}={v!r}: need a finite value >= 0")
        if self.distractor_hue_gap > 170:
            raise ConfigError(f"SynthConfig.distractor_hue_gap={self.distractor_hue_gap!r}: need <= 170 degrees")

    @property
    def class_names(self) -> list[str]:
        """Class names in label order (the head patterns)."""
        return list(PATTERNS[: self.num_classes])

    def to_json_dict(self) -> dict[str, Any]:
        """The config as plain JSON-able values (tuples become lists)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> SynthConfig:
        """Inverse of :meth:`to_json_dict`; unknown keys raise :class:`ConfigError`."""
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ConfigError(f"unknown SynthConfig keys {sorted(unknown)} (known: {sorted(names)})")
        kw: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()}
        return cls(**kw)


@dataclass(frozen=True)
class SynthSample:
    """One rendered image with its ground truth.

    Attributes:
        image: uint8 (H, W, 3) RGB.
        instance_masks: one bool (H, W) mask per instance (body + head pixels).
        head_mask: bool (H, W), union of the instances' head discs (the class-discriminative part).
        boxes: per-instance mask bounding boxes ``(x0, y0, x1, y1)``, inclusive pixel coordinates.
        label: the class index.
    """

    image: NDArray[np.uint8]
    instance_masks: list[NDArray[np.bool_]]
    head_mask: NDArray[np.bool_]
    boxes: list[tuple[int, int, int, int]]
    label: int


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`generate_synthetic` wrote.

    Attributes:
        root: the dataset folder.
        counts: images per split.
        num_classes: number of classes.
        instances: instances (= GT boxes) per split.
    """

    root: Path
    counts: dict[str, int]
    num_classes: int
    instances: dict[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------------------
# drawing helpers


def _hsv_rgb(h_deg: float, s: float, v: float) -> NDArray[np.float32]:
    r, g, b = colorsys.hsv_to_rgb((h_deg % 360.0) / 360.0, s, v)
    return np.array([r * 255.0, g * 255.0, b * 255.0], dtype=np.float32)


def _pts(xy: NDArray[np.float64]) -> list[NDArray[np.int32]]:
    """Float (N, 2) points -> one cv2 polygon: ``[int32 (N, 2)]`` in fixed point (``shift=_SHIFT``)."""
    return [np.round(xy * _SCALE).astype(np.int32).reshape(-1, 2)]


def _fill_poly(canvas: NDArray[np.uint8], xy: NDArray[np.float64]) -> None:
    import cv2

    cv2.fillPoly(canvas, _pts(xy), 1, lineType=cv2.LINE_8, shift=_SHIFT)


def _fill_circle(canvas: NDArray[np.uint8], cx: float, cy: float, r: float) -> None:
    import cv2

    cv2.circle(canvas, (round(cx * _SCALE), round(cy * _SCALE)), max(1, round(r * _SCALE)), 1, -1, cv2.LINE_8, _SHIFT)


def _ellipse_poly(cx: float, cy: float, a: float, b: float, theta: float, n: int = 64) -> NDArray[np.float64]:
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    ca, sa = math.cos(theta), math.sin(theta)
    u, v = a * np.cos(t), b * np.sin(t)
    return np.stack([cx + u * ca - v * sa, cy + u * sa + v * ca], axis=1)


def _smooth_field(rng: np.random.Generator, size: int, grid: int, channels: int = 1) -> NDArray[np.float32]:
    """Zero-mean, unit-std-ish smooth noise (size, size, channels): a grid of normals, cubic upsampled."""
    import cv2

    g = rng.standard_normal((grid, grid, channels)).astype(np.float32)
    up = np.asarray(cv2.resize(g, (size, size), interpolation=cv2.INTER_CUBIC), dtype=np.float32)  # no copy
    return up.reshape(size, size, channels)


class _Local:
    """Maps head-local coordinates (u along the object's axis, outward; v across) to image coordinates."""

    def __init__(self, cx: float, cy: float, theta: float) -> None:
        self.cx, self.cy = cx, cy
        self.ca, self.sa = math.cos(theta), math.sin(theta)

    def __call__(self, uv: Sequence[tuple[float, float]] | NDArray[np.float64]) -> NDArray[np.float64]:
        a = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
        x = self.cx + a[:, 0] * self.ca - a[:, 1] * self.sa
        y = self.cy + a[:, 0] * self.sa + a[:, 1] * self.ca
        return np.stack([x, y], axis=1)


def _rect(lo_u: float, hi_u: float, lo_v: float, hi_v: float) -> list[tuple[float, float]]:
    return [(lo_u, lo_v), (hi_u, lo_v), (hi_u, hi_v), (lo_u, hi_v)]


def _draw_pattern(canvas: NDArray[np.uint8], name: str, loc: _Local, r: float) -> None:
    """Rasterise head pattern ``name`` for a head of radius r.

    Every pattern is mirror-symmetric about the object's axis (so a horizontal flip keeps the class) and its
    shape differs from every other pattern under any rotation (so the class is decidable from the head alone,
    without looking at the body's direction)."""
    import cv2

    def circle(u: float, v: float, rad: float) -> None:
        p = loc([(u, v)])[0]
        _fill_circle(canvas, p[0], p[1], rad)

    t = max(0.22 * r, 1.0)  # bar half-thickness, at least one pixel wide overall
    if name == "dot":
        circle(0.0, 0.0, 0.45 * r)
    elif name == "ring":
        p = loc([(0.0, 0.0)])[0]
        thick = max(1, round(0.25 * r))
        cv2.circle(
            canvas,
            (round(p[0] * _SCALE), round(p[1] * _SCALE)),
            max(1, round(0.6 * r * _SCALE)),
            1,
            thick,
            cv2.LINE_8,
            _SHIFT,
        )
    elif name == "bar":  # one bar across the object's axis
        _fill_poly(canvas, loc(_rect(-t, t, -0.85 * r, 0.85 * r)))
    elif name == "eyes":
        circle(0.1 * r, -0.45 * r, 0.27 * r)
        circle(0.1 * r, 0.45 * r, 0.27 * r)
    elif name == "plus":
        _fill_poly(canvas, loc(_rect(-t, t, -0.85 * r, 0.85 * r)))
        _fill_poly(canvas, loc(_rect(-0.85 * r, 0.85 * r, -t, t)))
    elif name == "cap":
        _fill_poly(canvas, loc(_rect(0.1 * r, 1.2 * r, -1.2 * r, 1.2 * r)))
    elif name == "triangle":
        _fill_poly(canvas, loc([(0.75 * r, 0.0), (-0.5 * r, -0.62 * r), (-0.5 * r, 0.62 * r)]))
    elif name == "stripes":
        tt = max(0.17 * r, 0.75)
        for c in (-0.42 * r, 0.42 * r):
            _fill_poly(canvas, loc(_rect(c - tt, c + tt, -0.9 * r, 0.9 * r)))
    elif name == "three_dots":
        for ang in (0.0, 2.0 * math.pi / 3.0, -2.0 * math.pi / 3.0):
            circle(0.5 * r * math.cos(ang), 0.5 * r * math.sin(ang), 0.24 * r)
    elif name == "dark":  # the whole head
        circle(0.0, 0.0, r + 1.0)
    else:  # pragma: no cover - PATTERNS is closed
        raise ConfigError(f"unknown head pattern {name!r}")


def _instance_geometry(
    rng: np.random.Generator, cfg: SynthConfig, area_scale: float
) -> tuple[float, float, float, float]:
    """(a, b, r, theta): body semi-axes, head radius and axis angle for one instance, before placement."""
    size = cfg.size
    area = rng.uniform(*cfg.object_area) * area_scale * size * size
    q = rng.uniform(*cfg.aspect)
    head_area = cfg.head_fraction * area
    r = math.sqrt(head_area / math.pi)
    body_area = area - head_area
    a = math.sqrt(body_area / (math.pi * q))
    b = q * a
    theta = rng.uniform(0.0, 2.0 * math.pi)
    return a, b, r, theta


def _extent(a: float, b: float, r: float, theta: float, offset: float) -> tuple[float, float, float, float]:
    """Offsets (xmin, xmax, ymin, ymax) of the instance's pixels relative to the body centre."""
    c, s = math.cos(theta), math.sin(theta)
    ex = math.sqrt((a * c) ** 2 + (b * s) ** 2)  # half extents of the rotated ellipse
    ey = math.sqrt((a * s) ** 2 + (b * c) ** 2)
    d = a + offset * r
    hx, hy = d * c, d * s
    return min(-ex, hx - r), max(ex, hx + r), min(-ey, hy - r), max(ey, hy + r)


def _place(
    rng: np.random.Generator,
    cfg: SynthConfig,
    area_scale: float,
    region: tuple[float, float, float, float] | None = None,
    theta: float | None = None,
) -> tuple[float, float, float, float, float, float] | None:
    """Sample one instance's geometry and a position inside ``region`` (x0, y0, x1, y1; default the image minus
    the margin), shrinking the instance slightly while it does not fit. Returns (cx, cy, a, b, r, theta)."""
    size = cfg.size
    a, b, r, th = _instance_geometry(rng, cfg, area_scale)
    if theta is not None:
        th = theta
    m = cfg.margin * size + 1.0
    rx0, ry0, rx1, ry1 = region if region is not None else (m, m, size - 1 - m, size - 1 - m)
    for _ in range(10):
        x0, x1, y0, y1 = _extent(a, b, r, th, cfg.head_offset)
        free_x = (rx1 - x1) - (rx0 - x0)
        free_y = (ry1 - y1) - (ry0 - y0)
        if free_x >= 0 and free_y >= 0:
            cx = (rx0 - x0) + rng.uniform(0.0, free_x)
            cy = (ry0 - y0) + rng.uniform(0.0, free_y)
            return cx, cy, a, b, r, th
        a, b, r = a * 0.93, b * 0.93, r * 0.93  # too long for this angle: shrink slightly and retry
    return None


def _render_instance(
    size: int, cx: float, cy: float, a: float, b: float, r: float, theta: float, offset: float
) -> tuple[NDArray[np.uint8], NDArray[np.uint8], _Local]:
    body = np.zeros((size, size), np.uint8)
    _fill_poly(body, _ellipse_poly(cx, cy, a, b, theta, n=max(32, int(2 * math.pi * a))))
    d = a + offset * r
    hx, hy = cx + d * math.cos(theta), cy + d * math.sin(theta)
    head = np.zeros((size, size), np.uint8)
    _fill_circle(head, hx, hy, r)
    return body, head, _Local(hx, hy, theta)


def _background(rng: np.random.Generator, cfg: SynthConfig) -> NDArray[np.float32]:
    """Low-saturation smooth coloured noise with luminance texture and optional stripes, float32 (S, S, 3)."""
    size = cfg.size
    base = _hsv_rgb(rng.uniform(0, 360), rng.uniform(*cfg.bg_saturation), rng.uniform(*cfg.bg_value))
    grid = int(rng.integers(cfg.bg_grid[0], cfg.bg_grid[1] + 1))
    # one cubic upsampling gives luminance (channel 0) and chroma (channels 1..3) fields
    fields4 = _smooth_field(rng, size, grid, 4)
    lum = fields4[:, :, :1] * np.float32(cfg.bg_texture)
    if rng.uniform() < cfg.stripe_prob:
        ang = rng.uniform(0, math.pi)
        period = rng.uniform(0.08, 0.3) * size
        amp = rng.uniform(*cfg.stripe_amplitude)
        phase = rng.uniform(0, 2 * math.pi)
        k = 2 * math.pi / period
        xx = np.arange(size, dtype=np.float32)[None, :] * np.float32(k * math.cos(ang))
        yy = np.arange(size, dtype=np.float32)[:, None] * np.float32(k * math.sin(ang))
        lum = lum + (np.float32(amp) * np.sin(xx + yy + np.float32(phase)))[:, :, None]
    img = base[None, None, :] + lum + fields4[:, :, 1:] * np.float32(cfg.bg_chroma)
    return np.ascontiguousarray(img, dtype=np.float32)


def _hue_far_from(rng: np.random.Generator, hue: float, gap: float) -> float:
    """A hue (degrees) at least ``gap`` degrees (circularly) from ``hue``."""
    span = 360.0 - 2.0 * gap
    return (hue + gap + rng.uniform(0.0, span)) % 360.0


def _draw_distractors(rng: np.random.Generator, cfg: SynthConfig, img: NDArray[np.float32], body_hue: float) -> None:
    """Paint 2-5 flat shapes (discs, boxes, ellipses, triangles) onto ``img`` in place."""
    import cv2

    size = cfg.size
    n = int(rng.integers(cfg.distractors[0], cfg.distractors[1] + 1))
    for _ in range(n):
        if rng.uniform() < cfg.distractor_gray_prob:
            col = _hsv_rgb(rng.uniform(0, 360), rng.uniform(*cfg.bg_saturation), rng.uniform(0.1, 0.95))
        else:
            col = _hsv_rgb(
                _hue_far_from(rng, body_hue, cfg.distractor_hue_gap), rng.uniform(0.4, 0.9), rng.uniform(0.3, 0.9)
            )
        colour = tuple(float(c) for c in col)
        rad = rng.uniform(*cfg.distractor_radius) * size
        cx, cy = rng.uniform(-0.1, 1.1) * size, rng.uniform(-0.1, 1.1) * size
        ang = rng.uniform(0, 2 * math.pi)
        kind = int(rng.integers(0, 4))
        if kind == 0:
            cv2.circle(
                img,
                (round(cx * _SCALE), round(cy * _SCALE)),
                max(1, round(rad * _SCALE)),
                colour,
                -1,
                cv2.LINE_8,
                _SHIFT,
            )
            continue
        if kind == 1:
            poly = _Local(cx, cy, ang)(_rect(-rad, rad, -0.7 * rad, 0.7 * rad))
        elif kind == 2:
            poly = _ellipse_poly(cx, cy, rad, rad * rng.uniform(0.3, 0.8), ang, n=32)
        else:
            poly = _Local(cx, cy, ang)(
                [(rad * math.cos(k * 2 * math.pi / 3), rad * math.sin(k * 2 * math.pi / 3)) for k in range(3)]
            )
        cv2.fillPoly(img, _pts(poly), colour, cv2.LINE_8, _SHIFT)


def _pixel_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> NDArray[np.float32]:
    """Zero-mean per-pixel noise with standard deviation ``sigma``: the sum of two uniform bytes (a triangular
    distribution), ~4x cheaper than ``standard_normal`` and visually the same."""
    n = int(np.prod(shape))
    b = np.frombuffer(rng.bytes(2 * n), dtype=np.uint8)
    tri = b[:n].astype(np.float32) + b[n:].astype(np.float32) - np.float32(255.0)
    std = math.sqrt(2.0 * (256.0**2 - 1.0) / 12.0)  # std of the difference-centred sum of two U{0..255}
    return (tri * np.float32(sigma / std)).reshape(shape)


def render_sample(config: SynthConfig, label: int, rng: np.random.Generator) -> SynthSample:
    """Render one image of class ``label`` with its ground truth, drawing all randomness from ``rng``.

    Args:
        config: the design.
        label: class index in ``[0, config.num_classes)``.
        rng: the generator (consumed).

    Returns:
        A :class:`SynthSample` (uint8 (S, S, 3) image, per-instance bool masks, head mask, boxes).
    """
    if not 0 <= label < config.num_classes:
        raise ConfigError(f"label {label} outside [0, {config.num_classes})")
    size = config.size

    # colours first (the background and distractors avoid the body's hue)
    if rng.uniform() < config.body_hue_class_corr:
        body_hue = (360.0 * label / config.num_classes + rng.uniform(-10, 10)) % 360.0
    else:
        body_hue = rng.uniform(0.0, 360.0)
    body_rgb = _hsv_rgb(body_hue, rng.uniform(*config.body_saturation), rng.uniform(*config.body_value))

    img = _background(rng, config)
    _draw_distractors(rng, config, img, body_hue)

    # instances: geometry and non-overlapping placement
    two = rng.uniform() < config.two_instance_prob
    placed: list[tuple[NDArray[np.uint8], NDArray[np.uint8], _Local, float]] = []
    if two:
        # two instances of the same class, one in each half of the image (split at random along x or y), each
        # with its axis within 40 degrees of the half's long side, so both fit without overlapping
        scale = config.two_instance_area_scale
        m = config.margin * size + 1.0
        mid = (size - 1) / 2.0
        gap = max(1.0, 0.02 * size)
        vertical_cut = rng.uniform() < 0.5
        for k in range(2):
            if vertical_cut:  # left / right halves, instances roughly vertical
                region = (m, m, mid - gap, size - 1 - m) if k == 0 else (mid + gap, m, size - 1 - m, size - 1 - m)
                base = math.pi / 2
            else:
                region = (m, m, size - 1 - m, mid - gap) if k == 0 else (m, mid + gap, size - 1 - m, size - 1 - m)
                base = 0.0
            th = base + rng.uniform(-0.7, 0.7) + (math.pi if rng.uniform() < 0.5 else 0.0)
            geo2 = _place(rng, config, scale, region, th)
            if geo2 is None:
                placed = []
                break
            body2, head2, loc2 = _render_instance(size, *geo2, config.head_offset)
            placed.append((body2, head2, loc2, geo2[4]))
    if not placed:  # one instance (or the two-instance placement failed)
        geo = None
        for _ in range(50):
            geo = _place(rng, config, 1.0)
            if geo is not None:
                break
        if geo is None:  # pragma: no cover - only for extreme object_area/margin settings
            raise ConfigError("cannot fit an object in the image: lower SynthConfig.object_area or margin")
        body, head, loc = _render_instance(size, *geo, config.head_offset)
        placed = [(body, head, loc, geo[4])]

    instance_masks: list[NDArray[np.bool_]] = []
    obj_all = np.zeros((size, size), np.uint8)
    head_all = np.zeros((size, size), np.uint8)
    spot_all = np.zeros((size, size), np.uint8)
    pat_all = np.zeros((size, size), np.uint8)
    tmp = np.zeros((size, size), np.uint8)
    for body, head, loc, r in placed:
        obj = body | head
        instance_masks.append(obj.astype(bool))
        obj_all |= obj
        head_all |= head
        # darker spots on the body (class-shared), behind the head
        tmp[:] = 0
        for _ in range(int(rng.integers(config.body_spots[0], config.body_spots[1] + 1))):
            u = -rng.uniform(1.5, 3.5) * r
            v = rng.uniform(-0.5, 0.5) * r
            p = loc([(u, v)])[0]
            _fill_circle(tmp, p[0], p[1], rng.uniform(0.25, 0.45) * r)
        spot_all |= tmp & body & (1 - head)
        tmp[:] = 0
        _draw_pattern(tmp, PATTERNS[label], loc, r)
        pat_all |= tmp & head

    # object colour = body colour x texture x (spot or pattern darkening)
    tex = 1.0 + np.float32(config.body_texture) * np.clip(_smooth_field(rng, size, 4, 1), -2.5, 2.5)
    factor = np.where(
        pat_all.astype(bool),
        np.float32(config.pattern_darkness),
        np.where(spot_all.astype(bool), np.float32(config.spot_darkness), np.float32(1.0)),
    )[:, :, None]
    colour = body_rgb[None, None, :] * (tex * factor)
    img = np.where(obj_all.astype(bool)[:, :, None], colour, img)

    if config.blur_sigma > 0:
        import cv2

        img = np.asarray(cv2.GaussianBlur(img, (0, 0), config.blur_sigma), dtype=np.float32)  # float32 in: no copy
    if config.noise_sigma > 0:
        img = img + _pixel_noise(rng, img.shape, config.noise_sigma)
    out = np.clip(np.rint(img), 0, 255).astype(np.uint8)

    boxes: list[tuple[int, int, int, int]] = []
    for inst in instance_masks:
        ys = np.flatnonzero(inst.any(axis=1))
        xs = np.flatnonzero(inst.any(axis=0))
        boxes.append((int(xs[0]), int(ys[0]), int(xs[-1]), int(ys[-1])))
    return SynthSample(
        image=out, instance_masks=instance_masks, head_mask=head_all.astype(bool), boxes=boxes, label=label
    )


# --------------------------------------------------------------------------------------------------------------
# writing a dataset


def _image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), _SPLIT_SEED_INDEX[split], int(index)]))


def _labels(seed: int, split: str, n: int, k: int) -> NDArray[np.int64]:
    """Balanced labels (counts differ by at most one), in a seeded random order."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), _SPLIT_SEED_INDEX[split], 2**31 - 1]))
    return rng.permutation(np.arange(n, dtype=np.int64) % k)


def _encode(arr: NDArray[np.uint8], ext: str, quality: int = 95) -> bytes:
    import cv2

    if arr.ndim == 3:
        arr = arr[:, :, ::-1]  # RGB -> BGR for OpenCV
    params: list[int] = []  # PNG: OpenCV's defaults (fastest in measurements here)
    if ext == "jpg":
        params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    ok, buf = cv2.imencode("." + ext, np.ascontiguousarray(arr), params)
    if not ok:  # pragma: no cover - cv2 always encodes uint8 png/jpg
        raise RuntimeError(f"OpenCV failed to encode a {ext} image")
    return buf.tobytes()


def _write_lines(path: Path, lines: Sequence[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8", newline="\n")


@dataclass(frozen=True)
class _Encoded:
    image: bytes
    masks: list[bytes]
    head: bytes
    boxes: list[tuple[int, int, int, int]]
    label: int


def _render_encoded(job: tuple[SynthConfig, int, str, int, int]) -> _Encoded:
    """Render image ``index`` of ``split`` and encode it and its masks (runs in worker processes too)."""
    cfg, seed, split, index, label = job
    sample = render_sample(cfg, label, _image_rng(seed, split, index))
    return _Encoded(
        image=_encode(sample.image, cfg.image_format, cfg.jpeg_quality),
        masks=[_encode(m.astype(np.uint8) * 255, "png") for m in sample.instance_masks],
        head=_encode(sample.head_mask.astype(np.uint8) * 255, "png"),
        boxes=sample.boxes,
        label=sample.label,
    )


def generate_synthetic(
    out_dir: str | Path,
    config: SynthConfig | None = None,
    counts: Mapping[str, int] | None = None,
    seed: int = 0,
    *,
    overwrite: bool = False,
    progress: bool = False,
    workers: int = 1,
) -> SynthSummary:
    """Write the synthetic WSOL set to ``out_dir`` (layout in the module docstring).

    Args:
        out_dir: dataset folder (created).
        config: the design; default ``SynthConfig()`` (224 px, 8 classes).
        counts: images per split, keys among ``train``, ``val``, ``test``; default 3000 / 200 / 500. Splits with
            0 images are not written.
        seed: the seed; the same (config, counts, seed) writes byte-identical files.
        overwrite: replace an existing set in ``out_dir`` (only its images/, masks/, parts/ and metadata/
            folders are removed); without it an existing ``out_dir/metadata`` raises :class:`ConfigError`.
        progress: show a tqdm progress bar.
        workers: processes rendering in parallel (1 = in this process). The files do not depend on it.

    Returns:
        A :class:`SynthSummary`.
    """
    cfg = config if config is not None else SynthConfig()
    cnt = dict(counts) if counts is not None else {"train": 3000, "val": 200, "test": 500}
    for split, n in cnt.items():
        if split not in _SPLIT_SEED_INDEX:
            raise ConfigError(f"unknown split {split!r} in counts (use {', '.join(SPLITS)})")
        if not isinstance(n, (int, np.integer)) or n < 0:
            raise ConfigError(f"counts[{split!r}]={n!r}: need an integer >= 0")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed={seed!r}: need an integer >= 0")
    if not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers={workers!r}: need an integer >= 1")
    root = Path(out_dir)
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{root} exists and is not a folder (fix: pass a folder path for --out)")
    if (root / "metadata").exists():
        if not overwrite:
            raise ConfigError(
                f"{root} already holds a dataset (metadata/ exists) (fix: choose another --out or pass --overwrite)"
            )
        for sub in _SUBDIRS:
            if (root / sub).is_dir():
                shutil.rmtree(root / sub)
    root.mkdir(parents=True, exist_ok=True)
    ext = cfg.image_format

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=sum(cnt.values()), desc="synth", unit="img")
    instances: dict[str, int] = {}
    pool = None
    if workers > 1:
        import concurrent.futures
        import multiprocessing

        pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        for split in SPLITS:
            if not cnt.get(split):  # absent or zero: no folder (an empty split is not a valid WSOL split)
                continue
            n = int(cnt[split])
            for sub in ("images", "masks", "parts"):
                (root / sub / split).mkdir(parents=True, exist_ok=True)
            meta = root / "metadata" / split
            meta.mkdir(parents=True, exist_ok=True)
            labels = _labels(seed, split, n, cfg.num_classes)
            ids: list[str] = []
            lab_lines: list[str] = []
            size_lines: list[str] = []
            box_lines: list[str] = []
            mask_lines: list[str] = []
            part_lines: list[str] = []
            n_inst = 0
            jobs = [(cfg, int(seed), split, i, int(labels[i])) for i in range(n)]
            if pool is not None:
                results: Iterator[_Encoded] = pool.map(_render_encoded, jobs, chunksize=16)
            else:
                results = map(_render_encoded, jobs)
            for i, enc in enumerate(results):
                stem = f"{i:06d}"
                image_id = f"{split}/{stem}.{ext}"
                (root / "images" / image_id).write_bytes(enc.image)
                ids.append(image_id)
                lab_lines.append(f"{image_id},{enc.label}")
                size_lines.append(f"{image_id},{cfg.size},{cfg.size}")
                for k, (m, box) in enumerate(zip(enc.masks, enc.boxes)):
                    mask_id = f"{split}/{stem}_m{k}.png"
                    (root / "masks" / mask_id).write_bytes(m)
                    box_lines.append(f"{image_id},{box[0]},{box[1]},{box[2]},{box[3]}")
                    mask_lines.append(f"{image_id},{mask_id},")
                    n_inst += 1
                part_id = f"{split}/{stem}_head.png"
                (root / "parts" / part_id).write_bytes(enc.head)
                part_lines.append(f"{image_id},{part_id}")
                if bar is not None:
                    bar.update(1)
            _write_lines(meta / "image_ids.txt", ids)
            _write_lines(meta / "class_labels.txt", lab_lines)
            _write_lines(meta / "image_sizes.txt", size_lines)
            _write_lines(meta / "localization.txt", box_lines)
            _write_lines(meta / "localization_masks.txt", mask_lines)
            _write_lines(meta / "part_masks.txt", part_lines)
            instances[split] = n_inst
    finally:
        if bar is not None:
            bar.close()
        if pool is not None:
            pool.shutdown()
    _write_lines(root / "metadata" / "class_names.txt", cfg.class_names)
    info = {
        "generator": "fcam_deploy.data.synth",
        "seed": int(seed),
        "counts": {k: int(v) for k, v in cnt.items()},
        "config": cfg.to_json_dict(),
    }
    (root / "metadata" / "synth_config.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    return SynthSummary(
        root=root, counts={k: int(v) for k, v in cnt.items()}, num_classes=cfg.num_classes, instances=instances
    )
