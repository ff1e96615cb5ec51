# syntax=docker/dockerfile:1
# One file, two flavours of the same image, chosen by the FLAVOUR build argument:
#   cpu (api, migrate): torch's CPU wheel, without the CUDA libraries those roles never touch;
#   gpu (worker):       vLLM and the torch it pins, installed once (no torch layer replaced by another).
# Dependencies are installed before the code is copied, so a code change rebuilds only the last layers.
ARG FLAVOUR=cpu

FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
WORKDIR /srv/grace
RUN useradd --create-home --uid 10001 grace
COPY pyproject.toml ./
# The project's dependencies, read from pyproject.toml: this layer changes only when they do.
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
    > /tmp/requirements.txt

FROM base AS deps-cpu
ARG TORCH_VERSION=2.13.0
RUN pip install "torch==${TORCH_VERSION}" --index-url https://download.pytorch.org/whl/cpu
RUN pip install -r /tmp/requirements.txt \
    && if pip list 2>/dev/null | grep -qi '^nvidia-'; then echo "CUDA packages in the CPU image" >&2; exit 1; fi

FROM base AS deps-gpu
ARG VLLM_SPEC=vllm
# vLLM first: its pinned torch satisfies the project's torch>=2.4, so nothing installs a second one.
RUN pip install "${VLLM_SPEC}"
RUN pip install -r /tmp/requirements.txt

FROM deps-${FLAVOUR} AS app
COPY README.md alembic.ini ./
COPY grace_engine ./grace_engine
COPY grace_jobs ./grace_jobs
COPY grace_infra ./grace_infra
COPY grace_cli ./grace_cli
COPY grace_client ./grace_client
COPY app ./app
COPY workers ./workers
COPY migrations ./migrations
# Editable, so migrations/ and alembic.ini stay where `grace migrate` looks for them; --no-deps:
# the layers above hold every dependency.
RUN pip install --no-deps -e .

USER grace
EXPOSE 8000
CMD ["grace", "serve", "--host", "0.0.0.0", "--port", "8000"]
