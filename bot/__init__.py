"""parodybot: the Discord bot side. Nothing under bot/ imports TensorFlow."""

__version__ = "0.1.0"
