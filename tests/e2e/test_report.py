"""``maas models report`` as a user runs it, opened in headless Chromium (Debian's
``chromium``, installed by ``scripts/chromium.sh`` from ``make services``): the file
is self-contained and every plot renders."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from registry.drafts import Draft
from registry.entities import MetricWindow
from registry.labelled import QualityWindow
from registry.quality import Joined
from registry.registry import Registry
from registry.settings import RegistrySettings
from tests.registry_fixtures import MakeOnnx

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def _history(registry: Registry, make_onnx: MakeOnnx) -> None:
    """Two versions, a promotion and a rollback; windows of quality and of serving."""
    for _ in range(2):
        registry.models.register("m", Draft(make_onnx(), promote=True), actor="t")
    registry.models.rollback("m", actor="t", reason="worse")
    joined = []
    for hour in range(4):
        start = NOW - timedelta(hours=4 - hour)
        for version in (1, 2):
            for i in range(10):
                right = i < (9 if version == 1 else 6)
                window = QualityWindow(
                    "m",
                    version,
                    start,
                    3600,
                    "classifier",
                    rows=1,
                    correct=int(right),
                    confusion={"1": {"1" if right else "0": 1}},
                    delays={str(30 + i): 1},
                )
                joined.append(Joined(None, f"{hour}-{version}-{i}", 0, window))
            registry.metrics.record_windows(
                [
                    MetricWindow(
                        "m",
                        version,
                        "w",
                        start,
                        start + timedelta(hours=1),
                        jobs=100 + hour,
                        rows=100,
                        infer_ms_p50=1.0 + hour,
                        infer_ms_p95=2.0 + hour,
                    )
                ]
            )
    registry.quality.add_joined(joined)


def _write_report(settings: RegistrySettings, out: Path) -> str:
    """``maas models report m --out OUT`` as a user runs it; the page it wrote."""
    env = {
        **os.environ,
        "MAAS_DATABASE_URL": settings.database_url,
        "MAAS_ARTIFACT_DIR": str(settings.artifact_dir),
    }
    done = subprocess.run(
        [sys.executable, "-m", "maas.cli", "models", "report", "m", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return out.read_text()


def _plots_rendered(out: Path, tmp_path: Path) -> int:
    """How many plots headless Chromium drew of the report at ``out``."""
    chromium = shutil.which("chromium")
    assert chromium is not None, "install Debian's chromium: bash scripts/chromium.sh"
    dom = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            f"--user-data-dir={tmp_path / 'chromium'}",
            "--dump-dom",
            out.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    rendered = re.search(r'data-plots-rendered="(\d+)"', dom.stdout)
    assert rendered is not None, dom.stderr[-2000:]
    return int(rendered.group(1))


def test_the_report_is_self_contained_and_chromium_renders_every_plot(
    registry: Registry, registry_settings: RegistrySettings, make_onnx: MakeOnnx, tmp_path: Path
) -> None:
    _history(registry, make_onnx)
    out = tmp_path / "report.html"
    page = _write_report(registry_settings, out)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)  # fetches nothing
    assert page.count("<svg") == 8
    assert "rollback" in page and "v2" in page
    assert _plots_rendered(out, tmp_path) == 8


def test_a_report_of_an_unknown_model_is_one_line(
    registry: Registry, registry_settings: RegistrySettings, tmp_path: Path
) -> None:
    env = {**os.environ, "MAAS_DATABASE_URL": registry_settings.database_url}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "maas.cli",
            "models",
            "report",
            "nope",
            "--out",
            str(tmp_path / "r.html"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("error: no model named 'nope'")
    assert len(done.stderr.strip().splitlines()) == 1


def test_quality_lists_each_versions_windows(
    registry: Registry, registry_settings: RegistrySettings, make_onnx: MakeOnnx
) -> None:
    _history(registry, make_onnx)
    env = {**os.environ, "MAAS_DATABASE_URL": registry_settings.database_url}
    done = subprocess.run(
        [sys.executable, "-m", "maas.cli", "models", "quality", "m", "--version", "2"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()[1:] if line.strip()]
    assert len(rows) == 4
    assert all(row[0] == "2" and row[3] == "10" and row[4] == "0.6000" for row in rows), rows
    bad = subprocess.run(
        [sys.executable, "-m", "maas.cli", "models", "quality", "m", "--since", "soon"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert bad.returncode == 2
    assert "is not a duration" in bad.stderr


def test_the_report_draws_drift_and_the_most_drifted_features_beside_their_reference(
    registry: Registry, registry_settings: RegistrySettings, make_onnx: MakeOnnx, tmp_path: Path
) -> None:
    import numpy as np

    from registry.drafts import ReferenceDraft
    from registry.drift import DriftWindow
    from workers.drift import build_profile, window_drift

    _history(registry, make_onnx)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 4)).astype(np.float32)
    profile = build_profile({"x": x}, {"label": rng.integers(0, 3, 1000)})
    reference = ReferenceDraft(profile.rows, profile.source, profile.encode().decode())
    version = registry.models.register("m", Draft(make_onnx(), reference=reference), actor="t")
    windows = []
    for hour in range(3):
        moved = rng.normal(size=(300, 4)).astype(np.float32)
        moved[:, :2] += hour  # two features drift more every hour
        drift = window_drift(profile, {"x": moved}, {"label": rng.integers(0, 3, 300)})
        start = NOW - timedelta(hours=3 - hour)
        features = {f.name: f.as_dict() for f in (*drift.features, *drift.predictions)}
        windows.append(
            DriftWindow(
                "m", version.version, start, start + timedelta(hours=1), 300,
                drift.share_drifted, drift.prediction_drift, 0.9 - 0.1 * hour, features,
            )
        )  # fmt: skip
    registry.drift.record_windows(windows)
    out = tmp_path / "report.html"
    page = _write_report(registry_settings, out)
    assert "Input drift: share of features drifted" in page
    assert "x[0]: reference (v3)" in page and "x[1]: reference (v3)" in page
    assert "x[2]: reference" not in page  # it did not drift
    plots = 8 + 3 + 2
    assert page.count("<svg") == plots
    assert _plots_rendered(out, tmp_path) == plots
