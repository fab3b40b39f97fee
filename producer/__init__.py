"""The client side of maas and the public wire contract.

``Client`` (kafka-python) is imported on first use, so that asyncio users never load it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from producer.aio import AsyncClient, AsyncHandle
from producer.core import JobOptions
from producer.errors import ClientError, JobTimeout, JobTooLarge, ServiceError, TopicNotFound
from producer.kafka import KafkaSettings, Topics, ensure_topics
from producer.messages import (
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

if TYPE_CHECKING:
    from producer.client import Client, Handle


def __getattr__(name: str) -> Any:
    if name in {"Client", "Handle"}:
        from producer import client

        return getattr(client, name)
    raise AttributeError(f"module 'producer' has no attribute {name!r}")
