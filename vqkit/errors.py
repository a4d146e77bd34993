"""Errors that vqkit reports to users as one line (the CLI prints the message, no traceback)."""


class VQKitError(Exception):
    """Base class: the message alone tells the user what is wrong and where."""

    def _render_traceback_(self) -> list[str]:
        """IPython (notebooks, papermill) shows this instead of the traceback: one line, as the CLI
        prints it (``import sys, traceback; traceback.print_exception(sys.last_value)`` shows the stack)."""
        return [f"{type(self).__name__}: {self}"]


class ConfigError(VQKitError, ValueError):
    """A config file or override that cannot be used; the message says what to change."""


class DataError(VQKitError, ValueError):
    """A bad record, file or dataset; the message names the file, the line and the field."""


class CheckpointError(VQKitError):
    """A checkpoint, model folder or feature cache that cannot be used."""
