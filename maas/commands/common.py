"""Options shared by verb groups: Kafka and registry settings from flags or environment."""

from __future__ import annotations

import argparse

from producer.kafka import KafkaSettings


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
        help="the broker is the embedded one (env MAAS_EMBEDDED_BROKER=1): idempotence off",
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
