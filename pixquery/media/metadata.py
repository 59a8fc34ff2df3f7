"""Read what users filter by from image files: date taken, camera, GPS, size, format."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from PIL import ExifTags, Image

_EXIF_IFD = 0x8769
_GPS_IFD = 0x8825
_DATETIME_ORIGINAL = 0x9003
_DATETIME_DIGITIZED = 0x9004
_DATETIME = 0x0132
_MAKE = 0x010F
_MODEL = 0x0110


def _parse_exif_date(value: Any) -> str | None:
    """EXIF dates look like '2023:07:14 18:02:11'; return ISO 8601 or None if malformed."""
    if not isinstance(value, str):
        return None
    value = value.strip("\x00 ")
    for fmt in ("%Y:%m:%d %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y:%m:%d %H:%M", "%Y:%m:%d"):
        try:
            return datetime.strptime(value, fmt).isoformat()
        except ValueError:
            continue
    return None


def _dms_to_degrees(dms: Any, ref: Any) -> float | None:
    try:
        degrees = float(dms[0]) + float(dms[1]) / 60 + float(dms[2]) / 3600
    except (TypeError, ValueError, IndexError, ZeroDivisionError):
        return None
    if isinstance(ref, bytes):
        ref = ref.decode(errors="ignore")
    return -degrees if str(ref).strip().upper() in ("S", "W") else degrees


def _clean(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode(errors="ignore")
    if not isinstance(value, str):
        return None
    value = value.strip("\x00 ")
    return value or None


def read_metadata(image: Image.Image, path: str | Path | None = None) -> dict[str, Any]:
    """Metadata for the catalog. `image` is the opened (not yet transposed) image or one carrying its EXIF."""
    meta: dict[str, Any] = {"width": image.width, "height": image.height, "format": image.format}
    try:
        exif = image.getexif()
    except Exception:  # malformed EXIF must never make an image unreadable
        return meta
    if not exif:
        return meta
    sub = exif.get_ifd(_EXIF_IFD) if _EXIF_IFD in exif else {}
    meta["taken_at"] = (
        _parse_exif_date(sub.get(_DATETIME_ORIGINAL))
        or _parse_exif_date(sub.get(_DATETIME_DIGITIZED))
        or _parse_exif_date(exif.get(_DATETIME))
    )
    meta["camera_make"] = _clean(exif.get(_MAKE))
    meta["camera_model"] = _clean(exif.get(_MODEL))
    if _GPS_IFD in exif:
        gps = exif.get_ifd(_GPS_IFD)
        lat = _dms_to_degrees(gps.get(ExifTags.GPS.GPSLatitude), gps.get(ExifTags.GPS.GPSLatitudeRef))
        lon = _dms_to_degrees(gps.get(ExifTags.GPS.GPSLongitude), gps.get(ExifTags.GPS.GPSLongitudeRef))
        # A hostile or broken GPS block (0/0 rationals, nonsense angles) is dropped, not stored as NaN.
        if lat is not None and lon is not None and abs(lat) <= 90 and abs(lon) <= 180:
            meta["gps_lat"], meta["gps_lon"] = lat, lon
    return meta
