"""Apache Kafka from its jars: KRaft nodes for the tests, the benchmark and by hand.

A node is one JVM in combined mode (broker and KRaft controller) on free ports, with
its storage formatted afresh in a folder of its own; :class:`KafkaCluster` starts
several as one cluster. The jars are fetched once through Maven
(:mod:`scripts.kafka_jars`). Java 17 must be on the PATH.

By hand, from the project's root::

    python -m scripts.apache_kafka               # one node on 127.0.0.1:9092 until Ctrl-C
    python -m scripts.apache_kafka --brokers 3   # three, on 9092, 9093 and 9094
    python -m scripts.apache_kafka --sasl-ssl    # SASL_SSL (SCRAM); prints the MAAS_KAFKA_*
    python -m scripts.apache_kafka --fetch       # only fetch the jars (CI warms its cache)
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from maas.broker import accepting, free_port, terminate
from producer.kafka_options import KafkaOptions
from scripts.kafka_config import LOG_CONFIG, Membership, new_cluster_id, server_properties
from scripts.kafka_jars import KAFKA_VERSION, KafkaError, fetch_jars
from scripts.kafka_security import SaslSsl

__all__ = [
    "KAFKA_VERSION",
    "ApacheKafka",
    "KafkaCluster",
    "KafkaError",
    "NodeSettings",
    "fetch_jars",
]


@dataclass(kw_only=True)
class NodeSettings:
    """How an Apache Kafka node runs, alone or as each node of a cluster.

    ``properties`` override or add server properties (ACLs, ...). ``sasl_ssl``: the
    listener takes SASL_SSL with those users and certificates instead of PLAINTEXT.
    ``workdir`` keeps the storage and ``server.log`` (default: a temporary folder that
    :meth:`ApacheKafka.stop` removes). ``heap``: the JVM's. ``quick_start``: compile with
    the JIT's first tier only, which starts the JVM in about half the time on a small
    machine and serves slower: for tests, not for measurements.
    """

    host: str = "127.0.0.1"
    version: str = KAFKA_VERSION
    properties: Mapping[str, str] = field(default_factory=dict)
    workdir: Path | None = None
    heap: str = "512m"
    sasl_ssl: SaslSsl | None = None
    quick_start: bool = False


@dataclass(kw_only=True)
class ApacheKafka(NodeSettings):
    """An Apache Kafka node (KRaft, broker and controller) on ``host:port`` (free when 0).

    ``member``: its place in a cluster (:class:`KafkaCluster` sets it; default, a
    cluster of its own). The rest: :class:`NodeSettings`.
    """

    port: int = 0
    member: Membership | None = None
    controller_port: int = 0
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _folder: Path | None = field(default=None, init=False, repr=False)

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def log_path(self) -> Path | None:
        return None if self._folder is None else self._folder / "server.log"

    def client_options(self) -> dict[str, Any]:
        """Security options for a Kafka client (either library) of this node."""
        env = self.sasl_ssl.client_env() if self.sasl_ssl else {}
        return KafkaOptions.from_env(env).common()

    def start(self, timeout_s: float = 60.0) -> ApacheKafka:
        self.launch()
        self.wait_ready(time.monotonic() + timeout_s)
        return self

    def launch(self) -> None:
        """Format the storage and start the JVM, without waiting for it to serve."""
        if self.port and accepting(self.host, self.port):
            raise KafkaError(
                f"port {self.port} on {self.host} is already in use; "
                "stop what listens there or pass another --port"
            )
        libs = fetch_jars(self.version)
        folder = self._folder = self.workdir or Path(tempfile.mkdtemp(prefix="maas-kafka-"))
        folder.mkdir(parents=True, exist_ok=True)
        port, controller_port = _free_ports(self.host, 2)
        self.port = self.port or port
        self.controller_port = self.controller_port or controller_port
        member = self.member = self.member or Membership.alone(self.host, self.controller_port)
        config = self._write_config(folder, member)
        users = self.sasl_ssl.format_arguments() if self.sasl_ssl else []
        _format_storage(self._java(libs, folder, "kafka.tools.StorageTool", "format", "-t",
                        member.cluster_id, "-c", str(config), *users))  # fmt: skip
        with open(folder / "server.log", "ab") as log:
            self._process = subprocess.Popen(
                self._java(libs, folder, "kafka.Kafka", str(config)),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _write_config(self, folder: Path, member: Membership) -> Path:
        protocol = "SASL_SSL" if self.sasl_ssl else "PLAINTEXT"
        data = folder / "data"
        settings = {
            **server_properties(self.host, self.port, self.controller_port, data, member, protocol),
            **(self.sasl_ssl.server_properties() if self.sasl_ssl else {}),
            **self.properties,
        }
        config = folder / "server.properties"
        config.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
        (folder / "log4j2.properties").write_text(LOG_CONFIG)
        return config

    def _java(self, libs: Path, folder: Path, main: str, *args: str) -> list[str]:
        jit = ["-XX:TieredStopAtLevel=1"] if self.quick_start else []
        return [
            "java", f"-Xmx{self.heap}", "-XX:+UseSerialGC", *jit, "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={folder / 'log4j2.properties'}",
            "-cp", f"{libs}/*", main, *args,
        ]  # fmt: skip

    def wait_ready(self, deadline: float) -> None:
        """Wait until the node serves metadata (in a cluster: once a quorum formed)."""
        while not (accepting(self.host, self.port) and self.brokers_seen() > 0):
            if self._process is None or self._process.poll() is not None:
                self._fail("exited while starting")
            if time.monotonic() > deadline:
                self._fail(f"did not answer on {self.bootstrap_servers} in time")
            time.sleep(0.2)

    def brokers_seen(self) -> int:
        """How many brokers this node's metadata lists (0: it does not answer yet)."""
        return _brokers_listed(self.bootstrap_servers, self.client_options())

    def _fail(self, what: str) -> None:
        tail = ""
        if self.log_path is not None and self.log_path.exists():
            tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])
        self.stop()
        raise KafkaError(f"Apache Kafka {self.version} {what}:\n{tail}")

    def kill(self) -> None:
        """SIGKILL, as a crash would: no controlled shutdown, leaders move only once the
        controllers miss its heartbeats. Its folder stays until :meth:`stop`."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()

    def stop(self) -> None:
        """SIGTERM (a clean shutdown), SIGKILL after 20 s; the temporary folder goes."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            terminate(process, timeout_s=20)
        folder, self._folder = self._folder, None
        if folder is not None and self.workdir is None:
            shutil.rmtree(folder, ignore_errors=True)

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> ApacheKafka:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@dataclass(kw_only=True)
class KafkaCluster(NodeSettings):
    """``size`` Apache Kafka nodes, each broker and controller, in one KRaft cluster: a
    majority of them keeps the quorum, so one may die (:meth:`ApacheKafka.kill`). Each
    node runs with the cluster's :class:`NodeSettings`, in a folder of its own under
    ``workdir``."""

    size: int = 3
    heap: str = "384m"
    first_port: int = 0  # nodes on first_port, first_port + 1, ...; 0: free ports
    nodes: list[ApacheKafka] = field(default_factory=list, init=False)

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(node.bootstrap_servers for node in self.nodes)

    def start(self, timeout_s: float = 90.0) -> KafkaCluster:
        """Start every node at once; ready when each serves and lists all the brokers."""
        free = _free_ports(self.host, 2 * self.size)
        ports = [self.first_port + i for i in range(self.size)] if self.first_port else free
        controllers = free[self.size :]
        voters = ",".join(f"{i + 1}@{self.host}:{p}" for i, p in enumerate(controllers))
        cluster_id = new_cluster_id()
        self.nodes = [
            ApacheKafka(
                **self._node_settings(i + 1),
                port=ports[i],
                member=Membership(i + 1, cluster_id, voters, self.size),
                controller_port=controllers[i],
            )
            for i in range(self.size)
        ]
        try:
            with ThreadPoolExecutor(self.size) as pool:  # the formats run in parallel
                list(pool.map(ApacheKafka.launch, self.nodes))
            self._wait_ready(time.monotonic() + timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _node_settings(self, node_id: int) -> dict[str, Any]:
        """The cluster's :class:`NodeSettings` for node ``node_id``: its own workdir."""
        settings = {f.name: getattr(self, f.name) for f in fields(NodeSettings)}
        settings["workdir"] = self.workdir / f"node-{node_id}" if self.workdir else None
        return settings

    def _wait_ready(self, deadline: float) -> None:
        for node in self.nodes:
            node.wait_ready(deadline)
        while any(node.brokers_seen() < self.size for node in self.nodes):
            if time.monotonic() > deadline:
                raise KafkaError(f"the {self.size} brokers did not all register in time")
            time.sleep(0.2)

    def node(self, node_id: int) -> ApacheKafka:
        return self.nodes[node_id - 1]

    def running(self) -> bool:
        """Every node still runs."""
        return all(node.running() for node in self.nodes)

    def stop(self) -> None:
        """Kill every node (its storage is thrown away: a clean shutdown, one node after
        another, would only wait for a quorum that is going too), then tidy up."""
        for node in self.nodes:
            node.kill()
            node.stop()

    def __enter__(self) -> KafkaCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _format_storage(command: list[str]) -> None:
    """``kafka-storage format``: storage for this run only (SCRAM users included)."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise KafkaError(f"formatting Kafka's storage failed:\n{done.stdout}{done.stderr}")


def _free_ports(host: str, count: int) -> list[int]:
    """Ports free now, distinct, outside the range outgoing connections draw from."""
    return [free_port(host) for _ in range(count)]


def _brokers_listed(bootstrap_servers: str, options: Mapping[str, Any]) -> int:
    """How many brokers a metadata answer lists (unfenced and serving); 0: no answer."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError as ClientError

    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap_servers,
            request_timeout_ms=2000,
            reconnect_backoff_max_ms=200,  # a broker still starting: ask again soon
            **options,
        )
    except ClientError:
        return 0
    try:
        return len(admin.describe_cluster()["brokers"])
    except ClientError:
        return 0
    finally:
        admin.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.fetch:
        print(fetch_jars(args.version))
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="maas-kafka-"))
    sasl_ssl = SaslSsl.create(workdir / "tls") if args.sasl_ssl else None
    cluster = KafkaCluster(
        size=args.brokers,
        version=args.version,
        properties=dict(item.split("=", 1) for item in args.property),
        workdir=workdir,
        sasl_ssl=sasl_ssl,
        first_port=args.port,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with cluster:
            _announce(cluster, workdir)
            with contextlib.suppress(KeyboardInterrupt):
                while not stop.wait(0.5):
                    if not cluster.running():
                        print("an Apache Kafka node exited", flush=True)
                        return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.apache_kafka",
        description="Run Apache Kafka (KRaft) from its jars until Ctrl-C.",
    )
    parser.add_argument(
        "--port", type=int, default=9092, help="the first node's port (default 9092; 0: free)"
    )
    parser.add_argument(
        "--brokers", type=int, default=1, help="nodes, each on the next port (default 1)"
    )
    parser.add_argument(
        "--sasl-ssl",
        action="store_true",
        help="listen with SASL_SSL (SCRAM-SHA-512, a throwaway CA) instead of PLAINTEXT",
    )
    parser.add_argument("--version", default=KAFKA_VERSION, help=f"default {KAFKA_VERSION}")
    parser.add_argument(
        "--property",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a server property to set or override (repeatable)",
    )
    parser.add_argument("--fetch", action="store_true", help="only fetch the jars, then exit")
    return parser


def _announce(cluster: KafkaCluster, workdir: Path) -> None:
    print(
        f"Apache Kafka {cluster.version}: {cluster.size} node(s) on {cluster.bootstrap_servers} "
        f"(logs: {workdir}/node-*/server.log); Ctrl-C stops it",
        flush=True,
    )
    if cluster.sasl_ssl is not None:
        env = {"MAAS_BOOTSTRAP_SERVERS": cluster.bootstrap_servers, **cluster.sasl_ssl.client_env()}
        print("connect with:", flush=True)
        for name, value in env.items():
            print(f"  export {name}={shlex.quote(value)}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
