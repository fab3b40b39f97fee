"""``maas worker``: serve prediction jobs from the predict topic."""

from __future__ import annotations

import argparse

from maas.commands.common import add_kafka_options, add_registry_options, kafka_settings
from registry.policy import RollbackPolicy
from registry.settings import RegistrySettings
from workers.batching import BatchConfig
from workers.loop import WorkerSettings
from workers.pool import PoolSettings, serve
from workers.replies import DEFAULT_MAX_RECORD_BYTES
from workers.rollback import RollbackSettings
from workers.runtime import RuntimeSettings

BATCH_DEFAULTS = BatchConfig()


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "worker",
        help="serve prediction jobs (consume, batch, infer, reply)",
        description="Consume the predict topic, batch jobs dynamically per model version, "
        "run them and publish results. Without --model, every registered model is served, "
        "loaded on demand. Pools serving different models use different consumer groups.",
    )
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="M",
        help="serve only this model (repeatable)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        metavar="N",
        help="consumer processes in the group (default 1)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=0,
        metavar="P",
        help="serve Prometheus metrics on http://0.0.0.0:P/metrics (process i of a pool "
        "on P+i); 0, the default: not served",
    )
    parser.add_argument(
        "--max-batch-size",
        type=int,
        default=64,
        metavar="B",
        help="rows per batch at most (default 64)",
    )
    parser.add_argument(
        "--max-delay-ms",
        type=float,
        default=5.0,
        metavar="D",
        help="the longest the first row of a batch waits for company (default 5); it "
        "waits only while the recent arrival rate says more rows will come in time",
    )
    parser.add_argument(
        "--preferred-batch-size",
        type=int,
        action="append",
        default=[],
        metavar="P",
        help="dispatch as soon as a batch has P rows (repeatable)",
    )
    parser.add_argument(
        "--fixed-delay",
        action="store_true",
        help="always wait the whole --max-delay-ms for a batch to fill, even at light load",
    )
    parser.add_argument(
        "--max-job-bytes",
        type=int,
        default=DEFAULT_MAX_RECORD_BYTES,
        metavar="N",
        help=f"answer a job record over N bytes TOO_LARGE without decoding it (default "
        f"{DEFAULT_MAX_RECORD_BYTES}, Kafka's default record limit); above it, raise the "
        "broker's message.max.bytes too (docs/serving.md)",
    )
    parser.add_argument(
        "--max-job-rows",
        type=int,
        default=BATCH_DEFAULTS.max_job_rows,
        metavar="R",
        help=f"answer a job of more than R rows TOO_LARGE (default {BATCH_DEFAULTS.max_job_rows})",
    )
    parser.add_argument(
        "--max-in-flight",
        type=int,
        default=4096,
        help="jobs in flight before polling pauses (default 4096)",
    )
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where models run (default: GPU if present)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="intra-op threads per model (default: runtime's choice)",
    )
    parser.add_argument("--group-id", default="maas-workers", help="consumer group base name")
    _add_rollback_options(parser)
    add_kafka_options(parser)
    add_registry_options(parser)
    parser.set_defaults(func=run)


def _add_rollback_options(parser: argparse.ArgumentParser) -> None:
    defaults = RollbackPolicy()
    group = parser.add_argument_group("automatic rollback")
    group.add_argument(
        "--no-auto-rollback",
        dest="auto_rollback",
        action="store_false",
        help="never roll a freshly promoted version back automatically",
    )
    group.add_argument(
        "--rollback-max-error-rate",
        type=float,
        default=defaults.max_error_rate,
        metavar="R",
        help=f"roll back a new version failing more than this share of jobs "
        f"(default {defaults.max_error_rate:g})",
    )
    group.add_argument(
        "--rollback-max-p95-ratio",
        type=float,
        default=defaults.max_p95_ratio,
        metavar="X",
        help=f"roll back a new version whose p95 inference latency is X times its "
        f"predecessor's (default {defaults.max_p95_ratio:g})",
    )
    group.add_argument(
        "--rollback-min-jobs",
        type=int,
        default=defaults.min_jobs,
        metavar="J",
        help=f"jobs a new version must serve before it is judged (default {defaults.min_jobs})",
    )


def rollback_settings(args: argparse.Namespace) -> RollbackSettings:
    policy = RollbackPolicy(
        max_error_rate=args.rollback_max_error_rate,
        max_p95_ratio=args.rollback_max_p95_ratio,
        min_jobs=args.rollback_min_jobs,
    )
    return RollbackSettings(enabled=args.auto_rollback, policy=policy)


def worker_settings(args: argparse.Namespace) -> WorkerSettings:
    return WorkerSettings(
        models=tuple(args.model),
        group_id=args.group_id,
        batch=BatchConfig(
            max_batch_size=args.max_batch_size,
            max_delay_ms=args.max_delay_ms,
            preferred_batch_sizes=tuple(args.preferred_batch_size),
            adaptive_delay=not args.fixed_delay,
            max_job_rows=args.max_job_rows,
            max_queue_rows=max(BATCH_DEFAULTS.max_queue_rows, args.max_job_rows),
        ),
        runtime=RuntimeSettings(device=args.device, intra_op_threads=args.threads),
        max_in_flight=args.max_in_flight,
        max_job_bytes=args.max_job_bytes,
        rollback=rollback_settings(args),
    )


def run(args: argparse.Namespace) -> int:
    if args.processes < 1:
        raise SystemExit("--processes must be at least 1")
    if not 0 <= args.metrics_port <= 65535 - args.processes:
        raise SystemExit(f"--metrics-port must be a TCP port, got {args.metrics_port}")
    settings = PoolSettings(
        kafka=kafka_settings(args),
        registry=RegistrySettings.from_env(
            database_url=args.database_url, artifact_dir=args.artifact_dir
        ),
        worker=worker_settings(args),
        processes=args.processes,
        metrics_port=args.metrics_port,
        log_format=args.log_format,
        log_level=args.log_level,
    )
    return serve(settings)
