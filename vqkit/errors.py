"""Errors that vqkit reports to users as one line (the CLI prints the message, no traceback)."""


class VQKitError(Exception):
    """Base class: the message alone tells the user what is wrong and where."""


class ConfigError(VQKitError, ValueError):
    """A config file or override that cannot be used; the message says what to change."""


class DataError(VQKitError, ValueError):
    """A bad record, file or dataset; the message names the file, the line and the field."""


class CheckpointError(VQKitError):
    """A checkpoint, model folder or feature cache that cannot be used."""
