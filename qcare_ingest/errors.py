"""One exception tree; each docstring is the default message."""

from __future__ import annotations


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
    """A per-message error that may succeed on retry (deadlock, serialization failure)."""


class InfrastructureError(QcareError):
    """PostgreSQL or RabbitMQ is unreachable; wait and try again, never dead-letter."""


class PublishError(QcareError):
    """RabbitMQ did not confirm the publish in time."""
