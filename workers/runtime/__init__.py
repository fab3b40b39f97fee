"""Model runtimes: a version's artifact loaded and run, on CPU or CUDA. Kafka-free.

Owns the :class:`~workers.runtime.base.Runtime` protocol and its base
(:mod:`~workers.runtime.base`), picking and loading a version's runtime after its
sha256 is checked (:mod:`~workers.runtime.loader`), ONNX Runtime
(:mod:`~workers.runtime.onnxrt`) and TorchScript (:mod:`~workers.runtime.torchscript`),
validating a job's JSON inputs against the signature (:mod:`~workers.runtime.validation`)
and text models' tokenizers (:mod:`~workers.runtime.text`). Nothing here imports a
Kafka client; torch is imported only when a TorchScript version is loaded.
"""
