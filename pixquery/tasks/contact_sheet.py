"""A contact sheet of a clustering: one row per cluster, its name and size, then thumbnails of its best images."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageDraw, ImageFont

from pixquery.media.decode import ImageDecodeError, open_image

if TYPE_CHECKING:
    from pixquery.api import Library

THUMB = 96
PAD = 6
LABEL_WIDTH = 200
MAX_ROWS = 40


def _thumbnail(path: str, size: int) -> Image.Image:
    """The image fitted into a size x size square on grey; a crossed box when it cannot be read."""
    tile = Image.new("RGB", (size, size), (40, 40, 40))
    try:
        img = open_image(path, target_size=size)
    except ImageDecodeError:
        draw = ImageDraw.Draw(tile)
        draw.line((0, 0, size, size), fill=(160, 60, 60), width=2)
        draw.line((0, size, size, 0), fill=(160, 60, 60), width=2)
        return tile
    img.thumbnail((size, size))
    tile.paste(img, ((size - img.width) // 2, (size - img.height) // 2))
    return tile


def _paths(cluster: dict[str, Any], lib: Library | None, limit: int) -> list[str]:
    """Representatives first, then the other members, up to `limit`; ids without a path are looked up in `lib`."""
    refs = list(cluster.get("representatives", []))
    seen = {r["id"] for r in refs}
    refs += [m for m in cluster.get("members", []) if m["id"] not in seen]
    refs = refs[:limit]
    missing = [r["id"] for r in refs if not r.get("path")]
    found = lib.catalog.get_many(missing) if missing and lib is not None and lib.catalog is not None else {}
    return [r.get("path") or (found[r["id"]].path if r["id"] in found else "") for r in refs]


def contact_sheet(
    result: dict[str, Any],
    lib: Library | None,
    out_png: str | Path,
    per_cluster: int = 8,
    thumb: int = THUMB,
) -> Path:
    """Draw `result` (from `cluster_library`) as a PNG at `out_png`; returns the path.

    `lib` is only needed when the result's members carry ids without paths (e.g. a trimmed JSON).
    Shows at most 40 clusters, largest first, and an "unclustered" row when there are outliers.
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
        for i, path in enumerate(_paths(cluster, lib, per_cluster)):
            sheet.paste(_thumbnail(path, thumb), (LABEL_WIDTH + i * (thumb + PAD), top))
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, format="PNG")
    return out
