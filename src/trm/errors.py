"""Errors that end a command with one clear message (the CLI prints them without a traceback)."""


class TRMError(Exception):
    """Base class: a user-facing error with a self-explanatory message."""


class PuzzleError(TRMError, ValueError):
    """A malformed puzzle or task: wrong length, characters, shape, contradictions, no/several solutions."""


class DatasetError(TRMError, ValueError):
    """A dataset directory is missing, malformed or inconsistent."""


class ConfigError(TRMError, ValueError):
    """An unknown preset, an unknown or ill-typed override, or an impossible value."""


class CheckpointError(TRMError, ValueError):
    """A checkpoint or exported model is missing, corrupt, unsafe or does not match the config."""


class NumericalError(TRMError, FloatingPointError):
    """A NaN or infinite loss or gradient."""
