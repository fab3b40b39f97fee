"""Drift detection, measured: false positives on clean traffic, how soon a shift is found,
and what computing it costs, on the digits (64 numeric features) through the same code the
monitor runs (``workers.drift``).

The reference is the profile of the training split (1,347 rows, as the digits recipe
splits them); traffic is the held-out rows, resampled into windows, clean or with the
pixels of the top two rows (16 features) brightened by 6 and noised (sd 2), as a camera
whose exposure changed would. Prints one report; `make bench` runs it too.

    python -m bench.drift [--windows 20] [--rows 200]
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
from numpy.typing import NDArray
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from workers.drift import DriftThresholds, build_profile, window_drift

SHIFTED = np.arange(16)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _windows(
    pool: NDArray[np.float32], count: int, rows: int, seed: int, shift: bool
) -> list[NDArray[np.float32]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        window = pool[rng.integers(0, len(pool), rows)].copy()
        if shift:
            noise = rng.normal(0, 2, (rows, len(SHIFTED)))
            window[:, SHIFTED] = np.clip(window[:, SHIFTED] + 6 + noise, 0, 16)
        out.append(window)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--windows", type=int, default=20, help="windows of each kind (default 20)")
    parser.add_argument("--rows", type=int, default=200, help="rows per window (default 200)")
    args = parser.parse_args()
    data = load_digits()
    x = data.data.astype(np.float32)
    train, test = train_test_split(
        np.arange(len(x)), test_size=0.25, random_state=0, stratify=data.target
    )
    profile = build_profile({"x": x[train]}, {}, source="training split")
    thresholds = DriftThresholds()
    clean = [
        window_drift(profile, {"x": w}, {}, thresholds)
        for w in _windows(x[test], args.windows, args.rows, 1, shift=False)
    ]
    flagged = sum(f.drifted for w in clean for f in w.features)
    judged = sum(len(w.features) for w in clean)
    any_window = sum(w.share_drifted > 0 for w in clean)
    policy_windows = sum(w.share_drifted > 0.25 for w in clean)
    moved = [
        window_drift(profile, {"x": w}, {}, thresholds)
        for w in _windows(x[test], args.windows, args.rows, 2, shift=True)
    ]
    first = next((i + 1 for i, w in enumerate(moved) if w.share_drifted > 0.2), None)
    found = [sum(f.drifted for f in w.features if int(f.name[2:-1]) in SHIFTED) for w in moved]
    wrong = [sum(f.drifted for f in w.features if int(f.name[2:-1]) not in SHIFTED) for w in moved]
    big = _windows(x[test], 50, 10_000 // 50, 3, shift=False)
    start_cpu, start = _cpu(), time.perf_counter()
    for w in big:
        window_drift(profile, {"x": w}, {}, thresholds)
    cpu, wall = _cpu() - start_cpu, time.perf_counter() - start
    print(
        f"digits, 64 features, reference {profile.rows} rows, windows of {args.rows} rows; "
        f"thresholds PSI {thresholds.psi}, JS {thresholds.js}, min rows {thresholds.min_rows}"
    )
    print(
        f"clean traffic, {args.windows} windows: {flagged} of {judged} feature-windows flagged "
        f"({flagged / judged:.2%}); windows with any flag {any_window}; "
        f"windows over 'drift > 0.25' {policy_windows}"
    )
    print(
        f"shifted traffic (16 of 64 features moved): first window with share > 0.2: {first}; "
        f"moved features found per window min {min(found)}/16, "
        f"unmoved features flagged per window max {max(wrong)}"
    )
    print(
        f"cost: 10,000 rows in 50 windows: {cpu * 1000:.0f} ms CPU, {wall * 1000:.0f} ms wall, "
        f"{len(big) / wall:.0f} windows/s"
    )


if __name__ == "__main__":
    main()
