# syntax=docker/dockerfile:1
# Two images from one file:
#   docker build --target bot -t parodybot-bot .      (small: no TensorFlow)
#   docker build --target worker -t parodybot-worker . (TensorFlow GPU base)
# State lives in /data (mount a volume); config in /srv/parodybot/config.toml.

FROM python:3.11-slim AS bot
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PARODYBOT_DATA_DIR=/data
WORKDIR /srv/parodybot
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY cogs ./cogs
COPY workers ./workers
COPY discord_standin ./discord_standin
RUN pip install --no-cache-dir . \
 && useradd --create-home --uid 1000 parodybot && mkdir -p /data && chown parodybot /data
USER parodybot
VOLUME ["/data"]
# Checks the config, then starts the bot (DISCORD_TOKEN from the environment).
CMD ["sh", "-c", "parodybot config check && exec parodybot bot"]

# The GPU worker: TensorFlow's own CUDA image, plus gpt-2-simple and us.
FROM tensorflow/tensorflow:2.21.0-gpu AS worker
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PARODYBOT_DATA_DIR=/data TF_CPP_MIN_LOG_LEVEL=2
WORKDIR /srv/parodybot
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY cogs ./cogs
COPY workers ./workers
COPY discord_standin ./discord_standin
# The base image already has tensorflow; the worker extra pins the same version.
RUN pip install --no-cache-dir ".[worker]" \
 && useradd --create-home --uid 1000 parodybot && mkdir -p /data && chown parodybot /data
USER parodybot
VOLUME ["/data"]
CMD ["parodybot", "worker"]
