"""The client side of maas and the public wire contract."""

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
    "DecodeError",
    "ErrorCode",
    "ErrorInfo",
    "KafkaSettings",
    "PredictJob",
    "Result",
    "RetrainJob",
    "RetrainResult",
    "Timing",
    "Topics",
    "decode_predict",
    "decode_result",
    "decode_retrain",
    "decode_retrain_result",
    "encode",
    "ensure_topics",
]
