"""The steady-rate benchmark's driver (bench/steady) against a real embedded broker:
a couple of seconds of one-row jobs at a low rate, every one answered and measured."""

from __future__ import annotations

import math
from pathlib import Path

from bench.steady.driver import SteadyRun, steady
from bench.steady.sweep import digits_setup
from tests.kafka_helpers import Broker


def test_a_short_steady_run_answers_every_job_and_measures_both_processes(
    broker: Broker, tmp_path: Path
) -> None:
    setup, workload = digits_setup(broker.bootstrap_servers, tmp_path, jobs=50)
    found = steady(setup, workload, SteadyRun("maas", rate=20, seconds=2.0, warmup_s=0.5))
    assert found.sent == int(20 * 3.5)  # warm-up, window and the second after it
    assert found.answered == found.sent
    assert found.extra["window_answers"] > 0
    assert found.extra["timed"] > 0
    assert found.worker_ms_per_job > 0 and found.worker_core > 0
    assert found.broker_ms_per_job > 0 and found.broker_core > 0
    assert 0 < found.p50_ms <= found.p99_ms
    assert not math.isnan(found.p99_ms)
    assert found.bounded  # 20 jobs/s is far below one worker's drain rate
