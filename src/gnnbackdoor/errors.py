"""Errors that describe a user mistake: the CLI prints their message on one line and exits 2."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in what the user asked for (unknown name, bad value, missing data).

    The message must be one line that says what is wrong and what would be right.
    """

    exit_code: int = 2


class UnknownNameError(UserError, KeyError):
    """A name that no registry knows; the message lists the valid choices."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DatasetNotFoundError(UserError):
    """A dataset whose raw files are neither in the cache, nor in the mirror, nor downloadable."""


class ConfigError(UserError, ValueError):
    """A parameter value outside its valid range or of the wrong type."""


class TrainingDivergedError(UserError):
    """Training produced a non-finite loss, gradient, weight or score before any finite epoch
    could be kept; the message names the epoch and the setting to lower."""
