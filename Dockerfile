# One image for every role (api, worker, migrate); the worker builds with EXTRAS="[gpu]" (vLLM).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
ARG TORCH_SPEC="torch==2.13.0"
ARG EXTRAS=""

WORKDIR /srv/grace
RUN useradd --create-home --uid 10001 grace
# torch first, pinned: left to the dependency resolver it may pick a build you did not intend.
RUN pip install "${TORCH_SPEC}"
COPY pyproject.toml README.md alembic.ini ./
COPY grace_engine ./grace_engine
COPY grace_jobs ./grace_jobs
COPY grace_infra ./grace_infra
COPY grace_cli ./grace_cli
COPY grace_client ./grace_client
COPY app ./app
COPY workers ./workers
COPY migrations ./migrations
# Editable, so migrations/ and alembic.ini stay where `grace migrate` looks for them.
RUN pip install -e ".${EXTRAS}"

USER grace
EXPOSE 8000
CMD ["grace", "serve", "--host", "0.0.0.0", "--port", "8000"]
