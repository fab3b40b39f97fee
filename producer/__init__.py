"""The client side of maas and the public wire contract.

The contract (:mod:`producer.contract`) is the ground floor that the workers and the
registry import too; the SDK's names below are loaded on first use, so that importing
the contract, or using only the asyncio client, never loads a Kafka client it does not
need.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__all__ = [
    "AsyncClient",
    "AsyncHandle",
    "Client",
    "ClientError",
    "DecodeError",
    "ErrorCode",
    "ErrorInfo",
    "Handle",
    "JobOptions",
    "JobTimeout",
    "JobTooLarge",
    "KafkaSettings",
    "PredictJob",
    "Result",
    "RetrainJob",
    "RetrainResult",
    "ServiceError",
    "Timing",
    "TopicNotFound",
    "Topics",
    "decode_predict",
    "decode_result",
    "decode_retrain",
    "decode_retrain_result",
    "encode",
    "ensure_topics",
]

# Where each public name lives: the module is imported when the name is first used.
_HOMES = {
    "AsyncClient": "producer.aio",
    "AsyncHandle": "producer.aio",
    "Client": "producer.client",
    "Handle": "producer.client",
    "JobOptions": "producer.core",
    "KafkaSettings": "producer.kafka",
    "Topics": "producer.kafka",
    "ensure_topics": "producer.kafka",
    **dict.fromkeys(
        ("ClientError", "JobTimeout", "JobTooLarge", "ServiceError", "TopicNotFound"),
        "producer.errors",
    ),
    **dict.fromkeys(
        (
            "DecodeError",
            "ErrorCode",
            "ErrorInfo",
            "PredictJob",
            "Result",
            "RetrainJob",
            "RetrainResult",
            "Timing",
            "decode_predict",
            "decode_result",
            "decode_retrain",
            "decode_retrain_result",
            "encode",
        ),
        "producer.contract.messages",
    ),
}

if TYPE_CHECKING:
    from producer.aio import AsyncClient, AsyncHandle
    from producer.client import Client, Handle
    from producer.contract.messages import (
        DecodeError,
        ErrorCode,
        ErrorInfo,
        PredictJob,
        Result,
        RetrainJob,
        RetrainResult,
        Timing,
        decode_predict,
        decode_result,
        decode_retrain,
        decode_retrain_result,
        encode,
    )
    from producer.core import JobOptions
    from producer.errors import (
        ClientError,
        JobTimeout,
        JobTooLarge,
        ServiceError,
        TopicNotFound,
    )
    from producer.kafka import KafkaSettings, Topics, ensure_topics


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'producer' has no attribute {name!r}")
    value = getattr(import_module(home), name)
    globals()[name] = value
    return value
