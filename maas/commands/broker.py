"""``maas broker``: run the embedded Kafka-compatible broker alone."""

from __future__ import annotations

import argparse
import signal
import threading

from maas.broker import EmbeddedBroker
from maas.commands.common import Subparsers, add_verb


def register(subparsers: Subparsers) -> None:
    add_verb(
        subparsers,
        "broker",
        run,
        summary="run the embedded broker (Tansu, in memory) until Ctrl-C",
        description="Run the embedded Kafka-compatible broker. For development only: "
        "storage is in memory and is lost when it stops.",
        options=(_options,),
    )


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=9092, help="port to listen on (default 9092)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )


def run(args: argparse.Namespace) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with EmbeddedBroker(port=args.port, host=args.host) as broker:
        print(
            f"embedded broker listening on {broker.bootstrap_servers}; Ctrl-C stops it", flush=True
        )
        try:
            while not stop.wait(0.5):
                if not broker.running():
                    print("embedded broker exited", flush=True)
                    return 1
        except KeyboardInterrupt:
            pass
    return 0
