"""The errors a user can cause; the command lines turn them into one line (ground.cli)."""

class RecordError(ValueError):
    """Bad input, with the file and line it came from."""


class ConfigError(ValueError):
    """A setting out of range or of the wrong type, raised by a config's `__post_init__`."""


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message says which `pip install` adds it."""

