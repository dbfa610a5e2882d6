"""Exception types. Every error a user can trigger says what is wrong, where, and how to fix it.

The CLI maps each type to a documented exit code (see ``EXIT_CODES``).
"""

from __future__ import annotations


class ClvmlError(Exception):
    """Base class of every error clvml raises on purpose."""

    exit_code = 1


class ConfigError(ClvmlError):
    """The YAML config is invalid. ``problems`` lists every problem found (all at once)."""

    exit_code = 2

    def __init__(self, problems: list[str], source: str | None = None):
        self.problems = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        lines = [f"{len(self.problems)} problem(s){where}:"] + [f"  - {p}" for p in self.problems]
        super().__init__("\n".join(lines))


class FeatureDefinitionError(ClvmlError):
    """A custom feature is defined wrongly (name, table, windows) or its function fails or returns
    something that is not one number per customer and cut-off (see :mod:`clvml.features.custom`)."""

    exit_code = 2


class DataValidationError(ClvmlError):
    """Input tables broke their contract. ``report`` holds every problem found."""

    exit_code = 3

    def __init__(self, report):  # report: clvml.data.validation.ValidationReport
        self.report = report
        super().__init__(report.format())


class DataSourceError(ClvmlError):
    """A data source could not be read (missing file, unknown format, bad table name)."""

    exit_code = 3


class DatabaseUnreachableError(DataSourceError):
    """A database input could not be connected to: the server is down or unreachable, or it refused
    the login (wrong user or password). Nothing was read; a scheduler may retry later."""

    exit_code = 11


class UnusableModelError(ClvmlError):
    """The data cannot give a model worth exporting (e.g. held-out metrics that are NaN because the
    held-out cut-off has a single class). Nothing is exported or registered."""

    exit_code = 3


class ShrinkError(ClvmlError):
    """The scores would be empty, or shrink by more than ``scoring.max_shrink`` against the as_of's
    previous output or the model's training population (``--allow-shrink`` to write them anyway)."""

    exit_code = 3


class ModelIncompatibleError(ClvmlError):
    """A packaged model cannot score this data or was built by an incompatible clvml."""

    exit_code = 5


class ModelNotFoundError(ClvmlError):
    """The model to score does not exist: no such folder, run, registered model, version or alias."""

    exit_code = 9


class DriftError(ClvmlError):
    """Scoring stopped because input drift exceeded the configured threshold."""

    exit_code = 4


class LockError(ClvmlError):
    """Another run holds the lock on the same output (same as_of)."""

    exit_code = 7


class EngineError(ClvmlError):
    """The configured compute engine cannot start (pyspark not installed, no Java 17, bad setting) or
    ran out of memory."""

    exit_code = 8


class MonitorAlert(ClvmlError):
    """``clvml monitor`` found a threshold of the ``monitoring`` section crossed: the outputs and a
    retraining recommendation were written; the exit code lets a scheduler page someone."""

    exit_code = 10


class NoShadowRunsError(ClvmlError):
    """No as_of is scored both in production and in the shadow dataset (``clvml score --shadow``), so a
    challenger cannot be compared with the champion."""

    exit_code = 20


class NotEnoughRunsError(ClvmlError):
    """Fewer matured as_of partitions scored by both models than ``promote.min_runs``: no decision yet
    (the alias is unchanged)."""

    exit_code = 21


class ChallengerLosesError(ClvmlError):
    """The challenger does not win on ``promote.metric``: the production alias is unchanged."""

    exit_code = 22


class ShadowScoringError(ClvmlError):
    """The production scores were written, but scoring the shadow (challenger) model failed.
    ``production`` is the production run's result, ``cause`` the shadow run's error."""

    exit_code = 23

    def __init__(self, message: str, production: object = None, cause: BaseException | None = None):
        self.production = production
        self.cause = cause
        super().__init__(message)


class NotFittedError(ClvmlError, ValueError):
    """An estimator was used before ``fit``."""


EXIT_CODES = {
    0: "success",
    1: "unexpected clvml error",
    2: "invalid configuration",
    3: "invalid input data (also: scores empty or shrunk beyond scoring.max_shrink: nothing written)",
    4: "drift above the stop threshold: nothing written",
    5: "model incompatible with this clvml version or this data",
    6: "output location not writable (permission, disk full): previous output unchanged",
    7: "another run is writing the same output (lock held): nothing written",
    8: "the configured engine cannot start (e.g. Spark without pyspark or Java 17) or ran out of memory",
    9: "model not found (no such bundle folder, run, registered model, version or alias)",
    10: "monitoring alert: a threshold of the monitoring section was crossed (outputs and a retraining "
        "recommendation written)",
    11: "a database input cannot be reached or refused the login (server down, wrong host/port, bad "
        "credentials): nothing read",
    20: "clvml promote: no as_of scored both in production and in the shadow dataset",
    21: "clvml promote: fewer matured runs than promote.min_runs; alias unchanged",
    22: "clvml promote: the challenger does not win on promote.metric; alias unchanged",
    23: "clvml score --shadow: production scores written, the shadow (challenger) run failed",
}
