"""Draw ShapesWorld scenes with PIL.

Shapes are drawn on a canvas SUPERSAMPLE times larger than the output and box-downscaled, which gives
smooth anti-aliased edges cheaply. With an ``rng``, colours, position, size and rotation are jittered
slightly and per-pixel noise is added, so two renders of one scene are never identical but never
change what a caption says (jitter stays far below the grid spacing and the relation margin).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from pixquery.synth.world import BACKGROUND_RGB, COLOUR_RGB, SIZE_RADIUS, Obj, Scene

SUPERSAMPLE = 4
COLOUR_JITTER = 12
BACKGROUND_JITTER = 8
PIXEL_NOISE = 3.0
NOISY_BACKGROUND_STD = 22.0
RENDER_POSITION_JITTER = 0.008
RENDER_SIZE_JITTER = 0.04
RENDER_ROTATION_JITTER = 6.0


def _regular(n: int, radius: float, start_deg: float) -> list[tuple[float, float]]:
    return [(radius * math.cos(math.radians(start_deg + 360.0 * k / n)),
             radius * math.sin(math.radians(start_deg + 360.0 * k / n))) for k in range(n)]


def _star() -> list[tuple[float, float]]:
    pts = []
    for k in range(10):
        r = 1.0 if k % 2 == 0 else 0.42
        angle = math.radians(-90.0 + 36.0 * k)
        pts.append((r * math.cos(angle), r * math.sin(angle) + 0.06))
    return pts


def _cross() -> list[tuple[float, float]]:
    a, w = 0.92, 0.3
    return [(-w, -a), (w, -a), (w, -w), (a, -w), (a, w), (w, w), (w, a), (-w, a), (-w, w), (-a, w), (-a, -w),
            (-w, -w)]


def _heart() -> list[tuple[float, float]]:
    pts = []
    for k in range(48):
        t = 2 * math.pi * k / 48
        x = 16 * math.sin(t) ** 3
        y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
        # The classic curve spans x in [-16, 16], y in [-17, 12]; scale into the unit disc, y down.
        pts.append((x / 16.5, -(y + 2.5) / 15.5))
    return pts


#: Unit outlines (radius ~1, centred, y down); the circle is drawn as an ellipse instead.
OUTLINES: dict[str, list[tuple[float, float]]] = {
    "square": [(-0.76, -0.76), (0.76, -0.76), (0.76, 0.76), (-0.76, 0.76)],
    "triangle": [(x, y + 0.18) for x, y in _regular(3, 1.08, -90.0)],
    "star": _star(),
    "hexagon": _regular(6, 0.98, 0.0),
    "diamond": [(0.0, -1.05), (0.62, 0.0), (0.0, 1.05), (-0.62, 0.0)],
    "cross": _cross(),
    "heart": _heart(),
}
CIRCLE_RADIUS = 0.88


def _jitter_rgb(rgb: tuple[int, int, int], amount: int, rng: np.random.Generator | None) -> tuple[int, ...]:
    if rng is None:
        return rgb
    # One rng.random call: numpy's per-call overhead, not the arithmetic, dominates small draws.
    delta = rng.random(3).tolist()
    return tuple(min(255, max(0, c + int((2 * d - 1) * amount))) for c, d in zip(rgb, delta, strict=True))


def _background(scene: Scene, size: int, rng: np.random.Generator | None) -> Image.Image:
    rgb = _jitter_rgb(BACKGROUND_RGB[scene.background], BACKGROUND_JITTER, rng)
    canvas = size * SUPERSAMPLE
    if scene.background != "noisy":
        return Image.new("RGB", (canvas, canvas), rgb)
    # Texture at output resolution, upscaled by nearest so each output pixel stays one speckle.
    noise_rng = rng if rng is not None else np.random.default_rng(0)
    grey = noise_rng.normal(0.0, NOISY_BACKGROUND_STD, size=(size, size, 1))
    arr = np.clip(np.asarray(rgb, dtype=np.float32) + grey, 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB").resize((canvas, canvas), Image.Resampling.NEAREST)


def _draw_obj(draw: ImageDraw.ImageDraw, obj: Obj, canvas: int, rng: np.random.Generator | None) -> None:
    x, y, rotation, scale = obj.x, obj.y, obj.rotation, 1.0
    if rng is not None:
        x += float(rng.uniform(-RENDER_POSITION_JITTER, RENDER_POSITION_JITTER))
        y += float(rng.uniform(-RENDER_POSITION_JITTER, RENDER_POSITION_JITTER))
        rotation += float(rng.uniform(-RENDER_ROTATION_JITTER, RENDER_ROTATION_JITTER))
        scale += float(rng.uniform(-RENDER_SIZE_JITTER, RENDER_SIZE_JITTER))
    radius = SIZE_RADIUS[obj.size] * scale * canvas
    cx, cy = x * canvas, y * canvas
    fill = _jitter_rgb(COLOUR_RGB[obj.colour], COLOUR_JITTER, rng)
    if obj.shape == "circle":
        r = CIRCLE_RADIUS * radius
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
        return
    cos_t, sin_t = math.cos(math.radians(rotation)), math.sin(math.radians(rotation))
    points = [(cx + radius * (px * cos_t - py * sin_t), cy + radius * (px * sin_t + py * cos_t))
              for px, py in OUTLINES[obj.shape]]
    draw.polygon(points, fill=fill)


def render_scene(scene: Scene, size: int = 64, rng: np.random.Generator | None = None) -> Image.Image:
    """Render ``scene`` as an RGB ``size`` x ``size`` image.

    With ``rng`` the render is jittered and noised (deterministic given the generator state); with
    ``None`` it is the canonical, noise-free drawing.
    """
    if size < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size}")
    canvas = size * SUPERSAMPLE
    img = _background(scene, size, rng)
    draw = ImageDraw.Draw(img)
    for obj in scene.objects:
        _draw_obj(draw, obj, canvas, rng)
    img = img.reduce(SUPERSAMPLE)
    if rng is None:
        return img
    arr = np.asarray(img, dtype=np.float32) + rng.normal(0.0, PIXEL_NOISE, size=(size, size, 3))
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "RGB")
