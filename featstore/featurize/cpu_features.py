"""Which matrix units this CPU has, read at run time: `--compute-dtype auto` picks bfloat16 only
where the CPU multiplies bf16 natively (AMX-BF16, AVX512-BF16); elsewhere bf16 is emulated and
slower than float32; `--runtime auto` leaves bf16 work on AMX to torch (oneDNN's AMX kernels
matched or beat OpenVINO there)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path

NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
AMX_BF16_FLAG = "amx_bf16"


def _cpuinfo_flags(path: Path = Path("/proc/cpuinfo")) -> set[str]:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def _torch_capabilities() -> Mapping[str, object]:
    import torch

    get = getattr(getattr(torch, "cpu", None), "get_capabilities", None)
    try:
        return get() if get is not None else {}
    except Exception:  # an exotic CPU cpuinfo cannot read: fall back to /proc/cpuinfo
        return {}


def _reports(flags: tuple[str, ...]) -> bool:
    caps = _torch_capabilities()
    if any(caps.get(flag) for flag in flags):
        return True
    return bool(_cpuinfo_flags() & set(flags))


def detect_native_bf16() -> bool:
    """True when torch (cpuinfo) or /proc/cpuinfo reports AMX-BF16 or AVX512-BF16."""
    return _reports(NATIVE_BF16_FLAGS)


@functools.cache
def cpu_has_native_bf16() -> bool:
    """`detect_native_bf16`, asked once per process."""
    return detect_native_bf16()


@functools.cache
def cpu_has_amx_bf16() -> bool:
    """True when torch (cpuinfo) or /proc/cpuinfo reports AMX-BF16, asked once per process."""
    return _reports((AMX_BF16_FLAG,))
