"""Options shared by verb groups: Kafka and registry settings from flags or environment."""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import os
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from maas.commands.footprint import Footprint
from maas.errors import CommandError
from producer.contract import numbers
from registry.errors import ModelNotFound
from registry.settings import (
    DEFAULT_ARTIFACT_DIR,
    DEFAULT_DATABASE_URL,
    RegistrySettings,
    sqlite_path,
)

if TYPE_CHECKING:
    from rich.console import Console

    from producer.kafka import KafkaSettings
    from registry.registry import Registry

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
Declare = Callable[[argparse.ArgumentParser], None]
RegistryHandler: TypeAlias = "Callable[[Registry, argparse.Namespace], int]"
PROMOTE_CHOICES = ("gate", "never", "always")


def add_verb(
    subparsers: Subparsers,
    name: str,
    run: Callable[[argparse.Namespace], int],
    *,
    summary: str,
    description: str,
    options: Sequence[Declare],
) -> None:
    """Add the verb ``name``, running ``run``: ``summary`` for ``maas --help``,
    ``description`` for its own help, and its options declared by each of ``options`` in
    turn (its own first, then the groups it shares, such as :func:`add_kafka_options`)."""
    parser = subparsers.add_parser(name, help=summary, description=description)
    for declare in options:
        declare(parser)
    parser.set_defaults(func=run)


def add_verb_group(
    subparsers: Subparsers, name: str, *, summary: str, description: str
) -> Subparsers:
    """Add ``maas NAME VERB``: the subparsers that its verbs are added to."""
    parser = subparsers.add_parser(name, help=summary, description=description)
    return parser.add_subparsers(dest=f"{name}_command", metavar="VERB", required=True)


def add_setting(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    flag: str,
    settings: type[Any],
    name: str,
    text: str,
    **options: Any,
) -> None:
    """Add ``flag`` for the field ``name`` of the settings dataclass ``settings``: its
    default (and, unless ``type`` is given, its type) is the field's, and the help ends
    with it, so the dataclass stays the one place a default is written."""
    default = next(f.default for f in dataclasses.fields(settings) if f.name == name)
    add_default(parser, flag, default, text, **options)


def add_default(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    flag: str,
    default: Any,
    text: str,
    **options: Any,
) -> None:
    """Add ``flag`` with ``default`` (a constant of a light module, such as
    ``workers/defaults.py``): its type too unless ``type`` is given; the help ends with it."""
    shown = f"{default:g}" if isinstance(default, float) else str(default)
    options.setdefault("type", type(default))
    parser.add_argument(flag, default=default, help=f"{text} (default {shown})", **options)


def add_kafka_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("kafka")
    group.add_argument(
        "--bootstrap-servers",
        help="Kafka brokers (env MAAS_BOOTSTRAP_SERVERS, default 127.0.0.1:9092)",
    )
    group.add_argument(
        "--topic-prefix", help="topic prefix (env MAAS_TOPIC_PREFIX, default 'maas.')"
    )
    group.add_argument(
        "--embedded-broker",
        action="store_true",
        default=None,
        help="treat the broker as the embedded one, without idempotence, whatever it "
        "answers (env MAAS_EMBEDDED_BROKER=1); normally maas asks the broker at start",
    )


def add_registry_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("registry")
    group.add_argument(
        "--database-url",
        metavar="URL",
        help="registry database, SQLite or PostgreSQL (env MAAS_DATABASE_URL, default "
        f"{DEFAULT_DATABASE_URL}: relative to the current directory)",
    )
    group.add_argument(
        "--artifact-dir",
        metavar="DIR",
        help=f"artifact store (env MAAS_ARTIFACT_DIR, default {DEFAULT_ARTIFACT_DIR})",
    )


def add_metrics_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics-port",
        type=_port,
        default=0,
        metavar="P",
        help="serve Prometheus /metrics and the /healthz and /readyz probes on "
        "http://HOST:P (--metrics-host); 0, the default: not served",
    )
    add_metrics_host(parser)


def add_metrics_host(parser: argparse.ArgumentParser) -> None:
    """``--metrics-host``, beside a ``--metrics-port``."""
    parser.add_argument(
        "--metrics-host",
        default=os.environ.get("MAAS_METRICS_HOST", "0.0.0.0"),
        metavar="HOST",
        help="the address --metrics-port listens on (env MAAS_METRICS_HOST; default "
        "0.0.0.0, every interface, as Prometheus and Kubernetes probes in compose.yaml and "
        "deploy/ need; 127.0.0.1 keeps them to this machine)",
    )


def _port(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a TCP port (0-65535)")
    return port


def add_retrain_job_options(parser: argparse.ArgumentParser) -> None:
    """What a retrain job carries, for ``maas retrain`` and ``maas schedule add``."""
    parser.add_argument(
        "--dataset", metavar="URI_OR_NAME", help="a file URI/path or a built-in dataset name"
    )
    parser.add_argument("--params", type=_json_object, default={}, help='JSON, e.g. {"epochs": 5}')
    parser.add_argument(
        "--promote",
        choices=PROMOTE_CHOICES,
        default="gate",
        help="gate: only if it beats production; never; always (default gate)",
    )


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = numbers.loads(text)
    except numbers.NumberOutOfRange as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--params is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError('--params must be a JSON object, e.g. {"epochs": 5}')
    return value


def dataset_of(text: str | None) -> dict[str, str] | None:
    """``--dataset``: a URI or path or a built-in name (``iris``). A path has ``://``,
    a ``/`` or a suffix (``digits.csv``: built-in names have none), or exists here; the
    trainer reads a relative one relative to its first data root."""
    if not text:
        return None
    if "://" in text or "/" in text or Path(text).suffix or Path(text).exists():
        return {"uri": text}
    return {"name": text}


def kafka_settings(args: argparse.Namespace) -> KafkaSettings:
    from producer.kafka import KafkaSettings

    return KafkaSettings.from_env(
        bootstrap_servers=args.bootstrap_servers,
        topic_prefix=args.topic_prefix,
        embedded=args.embedded_broker,
    )


def registry_settings(args: argparse.Namespace) -> RegistrySettings:
    return RegistrySettings.from_env(database_url=args.database_url, artifact_dir=args.artifact_dir)


def with_registry(
    handler: RegistryHandler, *, announce: bool = False, create: bool = True
) -> Callable[[argparse.Namespace], int]:
    """Run ``handler`` with the registry open.

    ``announce``: alias moves are published on the control topic (needs Kafka options).
    ``create=False``, for the verbs that only read: a SQLite registry that does not
    exist is reported as such, instead of being created empty. The verbs that write
    (``create=True``) say on stderr which registry they wrote to, and one created for
    a command that then fails is removed again. A model that is not registered is
    reported with the registry that was asked.
    """

    def run(args: argparse.Namespace) -> int:
        from producer.control import alias_move_publisher
        from registry.registry import Registry

        settings = registry_settings(args)
        if not create:
            _require_existing(settings)
        hook = alias_move_publisher(kafka_settings(args), settings.identity) if announce else None
        footprint = Footprint.of(settings)
        try:
            with Registry.open(settings, on_alias_move=hook) as registry:
                code = handler(registry, args)
        except ModelNotFound as exc:
            footprint.remove()
            none = ", where there was none: nothing was left there" * footprint.creates_registry
            raise ModelNotFound(f"{exc} (registry: {settings.location}{none})") from exc
        except BaseException:
            footprint.remove()
            raise
        if code != 0:  # a verb that failed said why; a registry made for it goes again
            footprint.remove()
        elif create:
            made = "created and wrote to" if footprint.creates_registry else "wrote to"
            print(f"{made} registry {settings.location}", file=sys.stderr)
        return code

    return run


def _require_existing(settings: RegistrySettings) -> None:
    path = sqlite_path(settings.database_url)
    if path is not None and not path.exists():
        raise CommandError(
            f"there is no registry at {path.resolve()}: the SQLite registry's default "
            f"path, {DEFAULT_DATABASE_URL}, is relative to the current directory. Run maas "
            "where the registry is (where you ran `maas up`), or point MAAS_DATABASE_URL "
            "or --database-url at it"
        )


def actor(args: argparse.Namespace) -> str:
    """Who acts, for the audit log: --actor, else $USER@host."""
    if getattr(args, "actor", None):
        return str(args.actor)
    user = os.environ.get("USER") or getpass.getuser()
    return f"{user}@{socket.gethostname()}"


def console() -> Console:
    from rich.console import Console

    # markup off: shapes such as [batch,4] and reasons are data, not rich markup
    return Console(width=None if sys.stdout.isatty() else 160, highlight=False, markup=False)
