"""The archcost exception hierarchy.

Only the CLI catches these: it prints the message as one line and exits with ``exit_code``.
Every message names the problem and the fix.
"""


class ArchcostError(Exception):
    """Base of every error archcost reports to a user."""

    exit_code = 2


class ConfigError(ArchcostError):
    """Bad command-line values, ``--set`` overrides or configuration files."""


class SequenceLimitError(ConfigError):
    """A sequence longer than the model's positions: ``tokens`` past ``most`` (its config's
    ``field``). The message names training's ``-s``; generation names its own options."""

    def __init__(self, message: str, *, tokens: int, field: str, most: int):
        super().__init__(message)
        self.tokens, self.field, self.most = tokens, field, most


class ModelFileError(ArchcostError):
    """The model file is missing, does not import, or breaks the model-file convention."""


class TraceError(ArchcostError):
    """The model could not be traced (bad inputs, an op without a fake kernel, ...)."""


class ProfileError(ArchcostError):
    """A hardware profile file is malformed."""


class PlanError(ArchcostError):
    """A parallel plan is invalid for the model or the cluster."""


class InfeasibleError(ArchcostError):
    """No plan or size satisfies the constraints."""


class ValidationError(ArchcostError):
    """A measured (validation or calibration) run failed."""


class DocumentError(ArchcostError):
    """A result document or trace is unreadable, or two documents cannot be compared."""
