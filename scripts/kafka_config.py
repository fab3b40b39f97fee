"""What an Apache Kafka node under test is told: its ``server.properties`` and logging."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from pathlib import Path

from producer.kafka import Replication

LOG_CONFIG = """\
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = out
"""


@dataclass(frozen=True, slots=True)
class Membership:
    """A node's place in its KRaft cluster: its id, the cluster's id, the controller
    quorum (``1@host:port,2@host:port,...``) and how many brokers the cluster has."""

    node_id: int
    cluster_id: str
    voters: str
    brokers: int

    @classmethod
    def alone(cls, host: str, controller_port: int) -> Membership:
        return cls(1, new_cluster_id(), f"1@{host}:{controller_port}", 1)


def server_properties(
    host: str, port: int, controller_port: int, data: Path, member: Membership, protocol: str
) -> dict[str, str]:
    """A node that is broker and controller, tuned to start fast on a small machine; its
    clients' (and other brokers') listener is named after its ``protocol``."""
    internal = Replication.for_cluster(member.brokers)
    factor, min_insync = str(internal.factor), str(internal.min_insync)
    return {
        "process.roles": "broker,controller",
        "node.id": str(member.node_id),
        "controller.quorum.voters": member.voters,
        "listeners": f"{protocol}://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"{protocol}://{host}:{port}",
        "listener.security.protocol.map": f"{protocol}:{protocol},CONTROLLER:PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": protocol,
        "log.dirs": str(data),
        # Internal topics replicated as the service's own (few partitions: quick to create).
        "offsets.topic.replication.factor": factor,
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": factor,
        "transaction.state.log.min.isr": min_insync,
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.replication.factor": factor,
        "share.coordinator.state.topic.min.isr": min_insync,
        "group.initial.rebalance.delay.ms": "0",
        "num.network.threads": "2",
        "num.io.threads": "4",
    }


def new_cluster_id() -> str:
    """A fresh KRaft cluster id (what ``kafka-storage random-uuid`` prints): like Kafka's
    own, never starting with ``-``, which a command line would take for an option."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id
