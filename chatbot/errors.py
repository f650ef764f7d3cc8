"""The library's exception hierarchy: every error a person can cause has a type and a message
that names the file, line or field at fault, so the CLI and the server can show it as is."""


class ChatbotError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(ChatbotError):
    """A configuration value is missing, of the wrong type or out of range."""


class DataError(ChatbotError):
    """Input data is missing, unreadable, or holds nothing usable."""


class TokenizerError(ChatbotError):
    """A tokenizer cannot be trained or loaded."""


class BundleError(ChatbotError):
    """A model bundle or training checkpoint is missing, incomplete or corrupt."""
