"""Errors the user can fix. The CLI prints their message alone and exits with status 2."""

from __future__ import annotations


class UserError(Exception):
    """Bad input: config, scenario pack, checkpoint directory, output directory.

    The message is what the user sees, so it names the offending key or file and what is allowed.
    """

    exit_code = 2


class ConfigError(UserError):
    """An invalid config file, key, type or value."""


class ScenarioError(UserError):
    """A scenario pack that does not load, render or validate. Carries every problem found."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("invalid scenario pack: " + self.problems[0] if len(self.problems) == 1
                         else "invalid scenario pack:\n  - " + "\n  - ".join(self.problems))


class CheckpointError(UserError):
    """A model or run directory that holds no usable checkpoint."""


class StartupError(UserError):
    """An actor could not start: its engine failed to load the model, or a server it needs is gone."""


class MissingDependencyError(UserError):
    """An optional package is not installed; the message carries the install hint."""


class RunFailed(Exception):
    """The run itself failed (not its input): finished work is on disk; the CLI exits with status 1."""

    exit_code = 1
