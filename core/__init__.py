"""What the bot and the worker share: the contract between them, config, logs,
clock, text limits and CLI helpers. Nothing here imports `bot`, `cogs`,
`workers` or `app`, and nothing here is heavy (no TensorFlow, no discord.py)."""

__version__ = "0.1.0"
