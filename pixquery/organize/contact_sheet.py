"""A contact sheet of a clustering: one row per cluster, its name and size, then thumbnails of its best images."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from pixquery.errors import PixqueryError

ImageReader = Callable[[int, int], Image.Image]
"""read(file_id, size): the indexed image, decoded near `size` (raises a PixqueryError when it cannot be read)."""

THUMB = 96
PAD = 6
LABEL_WIDTH = 200
MAX_ROWS = 40


def _thumbnail(read: ImageReader, file_id: int, size: int) -> Image.Image:
    """The image fitted into a size x size square on grey; a crossed box when it cannot be read."""
    tile = Image.new("RGB", (size, size), (40, 40, 40))
    try:
        img = read(file_id, size)
    except PixqueryError:
        draw = ImageDraw.Draw(tile)
        draw.line((0, 0, size, size), fill=(160, 60, 60), width=2)
        draw.line((0, size, size, 0), fill=(160, 60, 60), width=2)
        return tile
    img.thumbnail((size, size))
    tile.paste(img, ((size - img.width) // 2, (size - img.height) // 2))
    return tile


def _ids(cluster: dict[str, Any], limit: int) -> list[int]:
    """Representatives first, then the other members, up to `limit`."""
    refs = list(cluster.get("representatives", []))
    seen = {r["id"] for r in refs}
    refs += [m for m in cluster.get("members", []) if m["id"] not in seen]
    return [int(r["id"]) for r in refs[:limit]]


def contact_sheet(
    result: dict[str, Any],
    read: ImageReader,
    out_png: str | Path,
    per_cluster: int = 8,
    thumb: int = THUMB,
) -> Path:
    """Draw `result` (from `cluster_images`) as a PNG at `out_png`, reading images by id with `read`; returns
    the path. Shows at most 40 clusters, largest first, and an "unclustered" row when there are outliers.
    """
    rows = [(f"{c['name']} ({c['size']})", c) for c in result.get("clusters", [])][:MAX_ROWS]
    if result.get("unclustered"):
        outliers = result["unclustered"]
        rows.append((f"unclustered ({len(outliers)})", {"members": outliers}))
    font = ImageFont.load_default(size=14)
    width = LABEL_WIDTH + per_cluster * (thumb + PAD) + PAD
    height = max(1, len(rows)) * (thumb + PAD) + PAD
    sheet = Image.new("RGB", (width, height), (250, 250, 250))
    draw = ImageDraw.Draw(sheet)
    if not rows:
        draw.text((PAD, PAD), "no images", fill=(0, 0, 0), font=font)
    for r, (title, cluster) in enumerate(rows):
        top = PAD + r * (thumb + PAD)
        draw.text((PAD, top + thumb // 2 - 8), title[:26], fill=(0, 0, 0), font=font)
        for i, file_id in enumerate(_ids(cluster, per_cluster)):
            sheet.paste(_thumbnail(read, file_id, thumb), (LABEL_WIDTH + i * (thumb + PAD), top))
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, format="PNG")
    return out
