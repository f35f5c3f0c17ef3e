# syntax=docker/dockerfile:1
# Two images from one file, both on Python 3.11 (what the tests run on):
#   docker build --target bot -t parodybot-bot .        (small: no TensorFlow)
#   docker build --target worker -t parodybot-worker .  (TensorFlow with CUDA)
# State lives in /data (mount a volume); config in /srv/parodybot/config.toml.

FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PARODYBOT_DATA_DIR=/data
WORKDIR /srv/parodybot
RUN useradd --create-home --uid 1000 parodybot && mkdir -p /data && chown parodybot /data
COPY pyproject.toml README.md LICENSE ./
COPY core ./core
COPY bot ./bot
COPY cogs ./cogs
COPY workers ./workers
COPY app ./app
COPY discord_standin ./discord_standin
VOLUME ["/data"]

FROM base AS bot
RUN pip install .
USER parodybot
# Checks the config, then starts the bot (DISCORD_TOKEN from the environment).
CMD ["sh", "-c", "parodybot config check && exec parodybot bot"]

# The GPU worker: TensorFlow, CUDA and cuDNN all come from PyPI (the `gpu`
# extra), so the host needs only the NVIDIA driver and the NVIDIA Container
# Toolkit. Without a GPU the same image trains and generates on the CPU.
FROM base AS worker
ENV TF_CPP_MIN_LOG_LEVEL=2
RUN pip install ".[worker,gpu]"
USER parodybot
CMD ["parodybot", "worker"]
