"""One exception tree; each docstring is the default message.

How each kind of failure is treated is decided in one place, `decision.decide()`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .decision import FinalDecision


class QcareError(Exception):
    """qcare-ingest error."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class ConfigError(QcareError):
    """Invalid configuration."""


class PermanentError(QcareError):
    """The message cannot succeed as it is; it goes to the dead-letter queue."""

    reason = "permanent"


class DecodeError(PermanentError):
    """The message body is not a valid canonical DTO."""

    reason = "undecodable"


class ConflictError(PermanentError):
    """The msg_id was already received with different content."""

    reason = "conflict"


class DataRefusedError(PermanentError):
    """The database refused the data."""

    reason = "data_refused"


class TransientError(QcareError):
    """The database is busy (deadlock, serialization failure, lock timeout); try again."""


class InfrastructureError(QcareError):
    """PostgreSQL or RabbitMQ is unreachable; wait and try again, never dead-letter."""


class GaveUp(QcareError):
    """The tries in this process are over; `decision` says what becomes of the message."""

    def __init__(self, error: Exception, decision: FinalDecision) -> None:
        super().__init__(f"{type(error).__name__}: {type(decision).__name__}")
        self.error = error
        self.decision = decision


class PublishError(QcareError):
    """RabbitMQ did not confirm the publish in time."""


class UnpublishableError(QcareError):
    """The message cannot be put into an AMQP frame (nothing was sent; the connection is
    fine)."""
