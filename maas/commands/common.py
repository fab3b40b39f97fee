"""Options shared by verb groups: Kafka and registry settings from flags or environment."""

from __future__ import annotations

import argparse
import getpass
import os
import socket
import sys
from collections.abc import Callable

from rich.console import Console

from producer.control import alias_move_publisher
from producer.kafka import KafkaSettings
from registry.errors import RegistryError
from registry.settings import RegistrySettings
from registry.store import Store

StoreHandler = Callable[[Store, argparse.Namespace], int]


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
        help="registry database (env MAAS_DATABASE_URL, default sqlite:///./.maas/registry.db)",
    )
    group.add_argument(
        "--artifact-dir", help="artifact store (env MAAS_ARTIFACT_DIR, default ./.maas/artifacts)"
    )


def kafka_settings(args: argparse.Namespace) -> KafkaSettings:
    return KafkaSettings.from_env(
        bootstrap_servers=args.bootstrap_servers,
        topic_prefix=args.topic_prefix,
        embedded=args.embedded_broker,
    )


def registry_settings(args: argparse.Namespace) -> RegistrySettings:
    return RegistrySettings.from_env(database_url=args.database_url, artifact_dir=args.artifact_dir)


def with_store(
    handler: StoreHandler, *, announce: bool = False
) -> Callable[[argparse.Namespace], int]:
    """Run ``handler`` with an open store; domain errors become one line and exit 1.

    ``announce``: alias moves are published on the control topic (needs Kafka options).
    """

    def run(args: argparse.Namespace) -> int:
        try:
            hook = alias_move_publisher(kafka_settings(args)) if announce else None
            with Store.open(registry_settings(args), on_alias_move=hook) as store:
                return handler(store, args)
        except RegistryError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1

    return run


def actor(args: argparse.Namespace) -> str:
    """Who acts, for the audit log: --actor, else $USER@host."""
    if getattr(args, "actor", None):
        return str(args.actor)
    user = os.environ.get("USER") or getpass.getuser()
    return f"{user}@{socket.gethostname()}"


def console() -> Console:
    # markup off: shapes such as [batch,4] and reasons are data, not rich markup
    return Console(width=None if sys.stdout.isatty() else 160, highlight=False, markup=False)
