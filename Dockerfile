# ChatEdit in one image: `chatedit serve` (workers for every lane; the web app joins with the
# app issue). Build the CPU image (default) or the GPU one:
#   docker build -t chatedit .
#   docker build -t chatedit:gpu --build-arg EXTRAS=gpu .
# CPU builds should point TORCH_INDEX_URL at a PyTorch CPU-wheel index, or pip pulls the
# multi-GB CUDA build of torch. onnxruntime comes from exactly one extra: cpu or gpu.
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim

# It listens on 0.0.0.0, so people sign in (CHATEDIT_AUTH=local): the first visit shows the page that
# creates the admin. OIDC providers go in /opt/chatedit/.streamlit/secrets.toml (mount it read-only).
ARG EXTRAS=cpu
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=""

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CHATEDIT_DATA_DIR=/data \
    CHATEDIT_HOST=0.0.0.0 \
    CHATEDIT_PORT=8501 \
    CHATEDIT_AUTH=local

RUN apt-get update \
    && apt-get install -y --no-install-recommends libglib2.0-0 tini \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 chatedit \
    && mkdir -p /data && chown chatedit /data

WORKDIR /opt/chatedit
COPY pyproject.toml README.md constraints-cpu.txt ./
COPY app ./app
COPY core ./core
COPY jobs ./jobs
COPY db ./db
COPY finetune ./finetune

RUN case "$EXTRAS" in cpu|gpu) ;; *) echo "EXTRAS must be cpu or gpu" >&2; exit 1;; esac \
    && if [ -n "$TORCH_INDEX_URL" ]; then pip install --index-url "$TORCH_INDEX_URL" "torch==${TORCH_VERSION}"; \
       else pip install "torch==${TORCH_VERSION}"; fi \
    && pip install ".[${EXTRAS}]" \
    && python -c "import importlib.metadata as m; names={d.metadata['Name'].lower() for d in m.distributions()}; \
assert not {'onnxruntime','onnxruntime-gpu'} <= names, 'both onnxruntime wheels installed'"

USER chatedit
VOLUME ["/data"]
EXPOSE 8501
ENTRYPOINT ["tini", "--", "chatedit"]
CMD ["serve"]
