"""What this CPU can do for inference: the instruction-set flags that decide whether int8 or bf16 pays off.

int8 matrix products are fast where the CPU has dot-product instructions for bytes (AVX-512 VNNI, AVX-VNNI,
AMX; ARM's i8mm/asimddp) and merely "not slower" on plain AVX2; bf16 needs AVX512_BF16 or AMX (x86) or the
ARM bf16 extension. Nothing here decides anything: `pixquery.models.parity` measures, and these flags are
recorded next to its measurements so that a cached choice is only reused on the CPU that made it.
"""

from __future__ import annotations

import hashlib
import platform
from functools import lru_cache
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")

REPORTED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx", "arm_bf16", "arm_i8mm")
"""The flags reported by `cpu_flags()`; `amx` is any of amx_tile/amx_int8/amx_bf16."""


def parse_cpuinfo(text: str) -> dict[str, bool]:
    """The reported flags from the text of /proc/cpuinfo (x86 `flags` lines or ARM `Features` lines)."""
    raw: set[str] = set()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("flags", "features"):
            raw.update(value.split())
    return {
        "avx2": "avx2" in raw,
        "avx512f": "avx512f" in raw,
        "avx512_vnni": "avx512_vnni" in raw,
        "avx_vnni": "avx_vnni" in raw,
        "avx512_bf16": "avx512_bf16" in raw,
        "amx": bool(raw & {"amx_tile", "amx_int8", "amx_bf16"}),
        # ARM names them without a prefix; x86 never lists a bare "bf16" or "i8mm".
        "arm_bf16": "bf16" in raw,
        "arm_i8mm": "i8mm" in raw,
    }


def _model_name(text: str) -> str:
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("model name", "cpu model", "hardware"):
            return value.strip()
    return platform.processor() or platform.machine()


@lru_cache(maxsize=1)
def _cpuinfo_text() -> str:
    try:
        return CPUINFO.read_text(encoding="utf-8", errors="replace")
    except OSError:  # not Linux: no flags known, so nothing CPU-specific is assumed
        return ""


def cpu_flags() -> dict[str, bool]:
    """This machine's reported flags (all False where /proc/cpuinfo cannot be read)."""
    return parse_cpuinfo(_cpuinfo_text())


def cpu_name() -> str:
    """The processor's model name, for reports."""
    return _model_name(_cpuinfo_text())


def has_bf16() -> bool:
    """Whether the CPU has native bf16 arithmetic (x86 AVX512_BF16 or AMX, or ARM bf16)."""
    flags = cpu_flags()
    return flags["avx512_bf16"] or flags["amx"] or flags["arm_bf16"]


def cpu_key() -> str:
    """A short id of this CPU (machine, model name, flags): cached measurements are only reused under it."""
    flags = cpu_flags()
    text = "|".join([platform.machine(), cpu_name(), ",".join(f for f in REPORTED_FLAGS if flags[f])])
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]
