# syntax=docker/dockerfile:1
#
# One image for every maas process: worker, trainer, scheduler, `maas db upgrade` and the
# CLI. The entrypoint is `maas`; the command picks the verb (`worker`, `trainer`, ...).
#
#   docker build -t maas:latest .                           # CPU: torch's CPU build
#   docker build --build-arg VARIANT=gpu -t maas:gpu .      # GPU: the `gpu` extra
#   docker build --build-arg EXTRAS=worker,postgres -t maas:worker .  # no torch: workers only
#
# The CPU variant takes torch from PyTorch's CPU index (no CUDA libraries, a fraction of
# the size); the GPU variant takes PyPI's build, which brings its CUDA libraries, and
# onnxruntime-gpu with its CUDA and cuDNN wheels. Either way constraints.txt pins the
# torch version. The host needs only the NVIDIA driver and container toolkit.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
ARG VARIANT=cpu
# worker: ONNX Runtime, the registry, the embedded broker; train: torch (the trainer);
# postgres: the driver; gateway: the OIP front door (maas gateway). Without `train`, no torch is installed (EXTRAS=worker,postgres).
ARG EXTRAS=worker,train,postgres,gateway
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/maas
ENV PATH=/opt/maas/bin:$PATH
WORKDIR /src

# torch first, in a layer of its own: it is most of the image and changes least.
COPY constraints.txt ./
RUN case "$VARIANT" in \
        cpu|gpu) ;; \
        *) echo "VARIANT must be cpu or gpu, not '$VARIANT'" >&2; exit 1 ;; \
    esac; \
    case ",$EXTRAS," in *,train,*) ;; *) exit 0 ;; esac; \
    if [ "$VARIANT" = cpu ]; then \
        pip install -c constraints.txt --index-url "$TORCH_CPU_INDEX" torch; \
    else \
        pip install -c constraints.txt torch; \
    fi

COPY pyproject.toml README.md ./
COPY maas ./maas
COPY producer ./producer
COPY workers ./workers
COPY registry ./registry
COPY migrations ./migrations
# onnxruntime and onnxruntime-gpu both provide the `onnxruntime` module: the GPU variant
# keeps only onnxruntime-gpu, reinstalled so that none of its files is missing.
RUN extras="$EXTRAS"; \
    if [ "$VARIANT" = gpu ]; then extras="$extras,gpu"; fi; \
    pip install -c constraints.txt ".[$extras]" \
    && if [ "$VARIANT" = gpu ]; then \
        ort="$(pip show onnxruntime-gpu | sed -n 's/^Version: //p')"; \
        pip uninstall -y onnxruntime \
        && pip install --no-deps --force-reinstall "onnxruntime-gpu==$ort"; \
    fi \
    && maas --version


FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
ARG VARIANT=cpu
LABEL org.opencontainers.image.title="maas" \
      org.opencontainers.image.description="Model-as-a-service on Apache Kafka (${VARIANT})" \
      org.opencontainers.image.licenses="Apache-2.0"

RUN groupadd --system --gid 10001 maas \
    && useradd --system --uid 10001 --gid maas --home-dir /var/lib/maas --no-create-home maas \
    && mkdir -p /var/lib/maas/artifacts /var/lib/maas/data \
    && chown -R maas:maas /var/lib/maas
COPY --from=build /opt/maas /opt/maas

# Named volumes mounted on these folders start with their owner: the maas user.
ENV PATH=/opt/maas/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MAAS_ARTIFACT_DIR=/var/lib/maas/artifacts \
    MAAS_DATA_ROOTS=/var/lib/maas/data
WORKDIR /var/lib/maas
USER maas:maas

# Every long-running maas process in this image serves /metrics, /healthz and /readyz on
# --metrics-port 9464 (compose.yaml and deploy/kubernetes pass it).
EXPOSE 9464
HEALTHCHECK --interval=15s --timeout=5s --start-period=90s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=4).status != 200)"]

ENTRYPOINT ["maas"]
CMD ["--help"]
