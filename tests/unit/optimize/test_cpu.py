"""The int8 settings chosen from what the CPU supports (workers/optimize/cpu.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from workers.optimize.cpu import Int8Settings, cpu_flags, detect, for_flags

AVX2_EPYC = "fpu vme sse4_2 avx avx2 fma bmi2"  # the CPU the 0.78 cosine was seen on


@pytest.mark.parametrize("vnni", ["avx512_vnni", "avx_vnni", "amx_int8"])
def test_a_cpu_with_vnni_keeps_full_8_bit_weights(vnni: str) -> None:
    chosen = for_flags(frozenset(f"{AVX2_EPYC} avx512f {vnni}".split()))
    assert chosen.reduce_range is False
    assert vnni in chosen.why


def test_an_x86_cpu_without_vnni_reduces_the_range() -> None:
    chosen = for_flags(frozenset(AVX2_EPYC.split()))
    assert chosen == Int8Settings(True, chosen.why) and "without VNNI" in chosen.why


def test_other_architectures_keep_full_8_bit_weights() -> None:
    assert for_flags(frozenset(), x86=False).reduce_range is False


def test_flags_are_read_from_the_first_processor(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512_vnni\n\n"
        "processor\t: 1\nflags\t\t: fpu\n"
    )
    assert cpu_flags(cpuinfo) == frozenset({"fpu", "avx2", "avx512_vnni"})
    cpuinfo.write_text("Features\t: fp asimd\n")  # arm64 names them differently
    assert cpu_flags(cpuinfo) is None
    assert cpu_flags(tmp_path / "missing") is None


def test_this_machine_gets_a_choice_that_says_why() -> None:
    chosen = detect()
    flags = cpu_flags()
    if flags is not None and flags & {"avx512_vnni", "avx_vnni", "amx_int8"}:
        assert chosen.reduce_range is False
    assert chosen.why
