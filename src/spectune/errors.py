"""Errors that are the user's to fix: the entry points print their message (one line or a short list) on stderr and
exit non-zero, without a Python traceback; every other exception is a bug and keeps its traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input, named with its fix: a refusal, not a crash."""


class ConfigError(UserError, ValueError):
    """A composed config that cannot run; the message names the option and the fix."""


class RunFolderExistsError(UserError, FileExistsError):
    """The run folder already holds a run; it is never overwritten."""


class RunFolderMismatchError(UserError, ValueError):
    """A run folder holds a run of a different configuration than the one asked for."""


class DataFormatError(UserError, ValueError):
    """A local data file that is not in the expected format; the message names the file and the format."""


class RunFolderMissingError(UserError, FileNotFoundError):
    """A run folder that should hold a run (to resume, evaluate or analyse) does not."""
