"""qcare-ingest: QCare X-ray order intake (gateway -> RabbitMQ -> workers -> PostgreSQL)."""

__all__ = ["__version__"]
__version__ = "0.1.0"
