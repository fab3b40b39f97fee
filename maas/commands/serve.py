"""``maas worker``: serve prediction jobs from the predict topic."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from maas.commands.common import (
    Subparsers,
    add_default,
    add_kafka_options,
    add_metrics_host,
    add_registry_options,
    add_setting,
    add_verb,
    kafka_settings,
    positive_int,
    registry_settings,
)
from maas.errors import CommandError
from registry.errors import AliasNotFound, ModelNotFound
from registry.policy import RollbackPolicy
from workers import defaults

# The flags' defaults come from workers/defaults.py and registry/policy.py, light
# modules: `maas worker --help` imports neither the serving loop nor numpy, and the
# modules below are imported only when the worker runs.
if TYPE_CHECKING:
    from producer.capabilities import Capabilities
    from producer.kafka import KafkaSettings
    from registry.registry import Registry
    from workers.batching.policy import BatchConfig
    from workers.serving.loop import WorkerSettings
    from workers.serving.rollback import RollbackSettings


def register(subparsers: Subparsers) -> None:
    add_verb(
        subparsers,
        "worker",
        run,
        summary="serve prediction jobs (consume, batch, infer, reply)",
        description="Consume the predict topic, batch jobs dynamically per model version, "
        "run them and publish results. Without --model, every registered model is served, "
        "loaded on demand. Pools serving different models use different consumer groups.",
        options=(_options, _add_rollback_options, add_kafka_options, add_registry_options),
    )


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="M",
        help="serve only this model (repeatable)",
    )
    add_default(
        parser,
        "--processes",
        defaults.PROCESSES,
        "consumer processes in the group",
        type=positive_int,
        metavar="N",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=0,
        metavar="P",
        help="serve Prometheus /metrics and the /healthz and /readyz probes on "
        "http://HOST:P (--metrics-host; process i of a pool on P+i); 0, the default: not "
        "served",
    )
    add_metrics_host(parser)
    _add_batch_options(parser)
    add_default(
        parser,
        "--max-in-flight",
        defaults.MAX_IN_FLIGHT,
        "jobs in flight before polling pauses",
        metavar="J",
    )
    add_default(
        parser,
        "--commit-interval-s",
        defaults.COMMIT_INTERVAL_S,
        "commit the answered offsets at most this often (at-least-once; a rebalance or a "
        "stop commits at once): a crash answers again at most this much of the jobs",
        metavar="S",
    )
    add_default(
        parser,
        "--device",
        defaults.DEVICE,
        "where models run; auto: the GPU if present",
        choices=("auto", "cpu", "cuda"),
    )
    add_default(
        parser,
        "--threads",
        defaults.INTRA_OP_THREADS,
        "intra-op threads per model; 0: the runtime's choice",
        metavar="T",
    )
    add_default(parser, "--group-id", defaults.GROUP_ID, "consumer group base name")
    add_default(
        parser,
        "--transport",
        defaults.TRANSPORT,
        "the Kafka client library that consumes jobs and publishes answers: aiokafka, or "
        "librdkafka (confluent-kafka; see docs/serving.md)",
        choices=("aiokafka", "librdkafka"),
    )
    parser.add_argument(
        "--exactly-once",
        action="store_true",
        default=None,
        help="commit each poll's results with its consumed offsets in one Kafka "
        "transaction, so that read_committed readers see every job answered once even "
        "after a crash (Apache Kafka only; env MAAS_EXACTLY_ONCE=1; default "
        f"{'on' if defaults.EXACTLY_ONCE else 'off'})",
    )


def _add_batch_options(parser: argparse.ArgumentParser) -> None:
    add_default(
        parser,
        "--max-batch-size",
        defaults.MAX_BATCH_SIZE,
        "rows per batch at most",
        metavar="B",
    )
    add_default(
        parser,
        "--max-delay-ms",
        defaults.MAX_DELAY_MS,
        "the longest the first row of a batch waits for company; it waits only while "
        "the recent arrival rate says more rows will come in time",
        metavar="D",
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
    add_default(
        parser,
        "--inline-infer-ms",
        defaults.INLINE_INFER_MS,
        "run a batch's inference on the event loop instead of in a thread once batches "
        "as large have taken less than this: for a small model the hop costs more than "
        "the inference; 0 always uses a thread",
        metavar="MS",
    )
    add_default(
        parser,
        "--max-job-bytes",
        defaults.MAX_RECORD_BYTES,
        "answer a job record over N bytes TOO_LARGE without decoding it (Kafka's default "
        "record limit); above it, raise the broker's message.max.bytes too "
        "(docs/serving.md)",
        type=positive_int,
        metavar="N",
    )
    add_default(
        parser,
        "--max-job-rows",
        defaults.MAX_JOB_ROWS,
        "rows a job may carry; a job with more is answered TOO_LARGE",
        type=positive_int,
        metavar="R",
    )


def _add_rollback_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("automatic rollback")
    group.add_argument(
        "--no-auto-rollback",
        dest="auto_rollback",
        action="store_false",
        help="never roll a freshly promoted version back automatically",
    )
    add_setting(
        group,
        "--rollback-max-error-rate",
        RollbackPolicy,
        "max_error_rate",
        "roll back a new version failing more than this share of jobs",
        metavar="R",
    )
    add_setting(
        group,
        "--rollback-max-p95-ratio",
        RollbackPolicy,
        "max_p95_ratio",
        "roll back a new version whose p95 inference latency is X times its predecessor's",
        metavar="X",
    )
    add_setting(
        group,
        "--rollback-min-jobs",
        RollbackPolicy,
        "min_jobs",
        "jobs a new version must serve before it is judged",
        metavar="J",
    )


def rollback_settings(args: argparse.Namespace) -> RollbackSettings:
    from workers.serving.rollback import RollbackSettings

    policy = RollbackPolicy(
        max_error_rate=args.rollback_max_error_rate,
        max_p95_ratio=args.rollback_max_p95_ratio,
        min_jobs=args.rollback_min_jobs,
    )
    return RollbackSettings(enabled=args.auto_rollback, policy=policy)


def batch_config(args: argparse.Namespace) -> BatchConfig:
    """The batching flags as a :class:`BatchConfig`; a combination it refuses is one
    line (e.g. a preferred batch size above --max-batch-size)."""
    from workers.batching.policy import BatchConfig

    try:
        return BatchConfig(
            max_batch_size=args.max_batch_size,
            max_delay_ms=args.max_delay_ms,
            preferred_batch_sizes=tuple(args.preferred_batch_size),
            max_queue_rows=max(BatchConfig().max_queue_rows, args.max_job_rows),
            max_job_rows=args.max_job_rows,
            adaptive_delay=not args.fixed_delay,
            inline_infer_ms=args.inline_infer_ms,
        )
    except ValueError as exc:
        raise CommandError(f"the batching flags do not fit together: {exc}") from exc


def _commit_interval_s(args: argparse.Namespace) -> float:
    if not args.commit_interval_s > 0:
        raise CommandError(
            f"--commit-interval-s must be above 0 seconds, got {args.commit_interval_s}; "
            "the default is 0.2"
        )
    return float(args.commit_interval_s)


def worker_settings(args: argparse.Namespace) -> WorkerSettings:
    from workers.runtime.base import RuntimeSettings
    from workers.serving.loop import WorkerSettings

    return WorkerSettings(
        models=tuple(args.model),
        group_id=args.group_id,
        batch=batch_config(args),
        runtime=RuntimeSettings(device=args.device, intra_op_threads=args.threads),
        max_in_flight=args.max_in_flight,
        commit_interval_s=_commit_interval_s(args),
        max_job_bytes=args.max_job_bytes,
        rollback=rollback_settings(args),
        exactly_once=_exactly_once(args),
        transport=args.transport,
        registry=registry_settings(args).identity,
    )


def _exactly_once(args: argparse.Namespace) -> bool:
    """--exactly-once, else MAAS_EXACTLY_ONCE, else the settings' default."""
    if args.exactly_once is not None:
        return bool(args.exactly_once)
    if "MAAS_EXACTLY_ONCE" in os.environ:
        return os.environ["MAAS_EXACTLY_ONCE"].lower() in {"1", "true", "yes"}
    return defaults.EXACTLY_ONCE


def _require_transactions(kafka: KafkaSettings, capabilities: Capabilities) -> None:
    if not capabilities.transactions:
        raise CommandError(
            f"the broker at {kafka.bootstrap_servers} has no transactions "
            f"({capabilities.refusal}), which --exactly-once (MAAS_EXACTLY_ONCE) needs; "
            "the embedded broker has none: serve at-least-once (without the flag and "
            "MAAS_EXACTLY_ONCE), or point MAAS_BOOTSTRAP_SERVERS at Apache Kafka"
        )


def _say_unknown_models(registry: Registry, models: list[str], location: str) -> None:
    """Say at start what /readyz would: a pinned model the registry lacks is served by
    no one until it is registered (not refused: a deployment may register it later)."""
    import structlog  # and rich with it: not for `maas worker --help`

    log = structlog.get_logger(__name__)
    for model in models:
        try:
            registry.models.resolve(model)
        except (ModelNotFound, AliasNotFound) as exc:
            log.warning(
                "pinned model cannot be served yet: this worker answers none of its jobs "
                "and /readyz says not ready until it is registered and promoted",
                model=model,
                why=str(exc).split(";")[0],
                registry=location,
            )


def run(args: argparse.Namespace) -> int:
    if args.transport == "librdkafka":  # said at once, in one line, when not installed
        import confluent_kafka  # noqa: F401
    if not 0 <= args.metrics_port <= 65535 - args.processes:
        raise CommandError(
            f"--metrics-port {args.metrics_port}: ports P to P+{args.processes - 1} "
            "must be TCP ports (0 turns metrics off)"
        )
    worker = worker_settings(args)  # a bad flag is one line, before any service is asked
    registry = registry_settings(args)
    from producer.capabilities import run_blocking
    from producer.kafka import detect_capabilities
    from registry.registry import Registry
    from workers.serving.pool import PoolSettings, serve

    # Opened once here: migrated before the pool's processes start, and a database that
    # is down or a URL that is wrong is one message, not one traceback per process.
    with Registry.open(registry) as opened:
        _say_unknown_models(opened, args.model, registry.location)
    kafka = kafka_settings(args)
    # Asked here, before the pool starts: a broker that is down is one message, not one
    # per process (each worker process asks again as it starts).
    capabilities = run_blocking(lambda: detect_capabilities(kafka))
    if worker.exactly_once:
        _require_transactions(kafka, capabilities)
    settings = PoolSettings(
        kafka=kafka,
        registry=registry,
        worker=worker,
        processes=args.processes,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        log_format=args.log_format,
        log_level=args.log_level,
    )
    return serve(settings)
