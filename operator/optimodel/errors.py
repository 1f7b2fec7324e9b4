"""Errors a user can cause, and the exit codes the command line maps them to. Pure: stdlib only.

Every error names the field or URI at fault, so the message alone tells the user what to change.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Distinct codes so scripts and the Job controller can tell a failed gate from bad input."""

    PASSED = 0
    GATES_FAILED = 1
    BAD_INPUT = 2
    STORAGE = 3
    INTERNAL = 4


class OptimodelError(Exception):
    """Base of the errors that end a run with a message rather than a traceback."""

    exit_code: ExitCode = ExitCode.INTERNAL
    reason: str = "InternalError"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class SpecError(OptimodelError):
    """The spec is invalid: retrying the same spec cannot help."""

    exit_code = ExitCode.BAD_INPUT
    reason = "InvalidSpec"


class InputError(OptimodelError):
    """A model or data object exists but is unusable (corrupt, wrong shape, missing arrays)."""

    exit_code = ExitCode.BAD_INPUT
    reason = "InvalidInput"


class NotFoundError(OptimodelError):
    """An object the spec names does not exist."""

    exit_code = ExitCode.BAD_INPUT
    reason = "ObjectNotFound"


class StorageError(OptimodelError):
    """The artifact store cannot be reached or refuses the credentials: retrying may help."""

    exit_code = ExitCode.STORAGE
    reason = "StorageUnavailable"


class AccessDeniedError(StorageError):
    """The store answered but refused the credentials."""

    reason = "AccessDenied"


class ObjectTooLarge(StorageError):
    """An object is larger than its reader allows: refused without reading it whole (a report or
    pointer of megabytes is not one a Job wrote; an endpoint streaming forever must not fill memory)."""

    reason = "ObjectTooLarge"
