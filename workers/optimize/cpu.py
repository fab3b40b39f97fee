"""The int8 settings this CPU needs, chosen from what it supports.

ONNX Runtime's x86 int8 kernels multiply u8 activations by s8 weights. Without VNNI
(AVX-512 VNNI, AVX-VNNI or AMX) they use ``vpmaddubsw``, whose 16-bit intermediate
sums saturate: a text model quantised with full 8-bit weights came back with a cosine
of 0.78 to its parent on an AVX2-only EPYC, 1.0 on a VNNI one. ``reduce_range`` (7-bit
weights) leaves the headroom that avoids it, at a little precision. So it is chosen
here, per machine, and the version records which was used (the int8 accuracy figure
depends on the CPU it was quantised and measured on: docs/serving.md).
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
# Any of these lets the u8 x s8 dot product run without 16-bit saturation.
VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
_X86 = frozenset({"x86_64", "amd64", "i386", "i686"})


@dataclass(frozen=True, slots=True)
class Int8Settings:
    """``reduce_range``: quantise weights to 7 bits; ``why``: what decided it."""

    reduce_range: bool
    why: str


def for_flags(flags: frozenset[str], *, x86: bool = True) -> Int8Settings:
    """The settings for a CPU with these ``/proc/cpuinfo`` flags."""
    if not x86:
        return Int8Settings(False, "not x86: int8 dot products do not saturate")
    vnni = sorted(flags & VNNI_FLAGS)
    if vnni:
        return Int8Settings(False, f"x86 with {vnni[0]}: full 8-bit weights")
    return Int8Settings(True, "x86 without VNNI: 7-bit weights (reduce_range) avoid saturation")


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str] | None:
    """The first processor's flags, or None where ``cpuinfo`` is unreadable or has none."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return None


def detect() -> Int8Settings:
    """The settings for this machine's CPU. An x86 CPU whose flags cannot be read is
    treated as one without VNNI: 7-bit weights are safe everywhere."""
    x86 = platform.machine().lower() in _X86
    flags = cpu_flags()
    if x86 and flags is None:
        return Int8Settings(True, "x86, flags unknown: 7-bit weights (reduce_range) to be safe")
    return for_flags(flags or frozenset(), x86=x86)
