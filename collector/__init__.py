"""mimecast-collector: collects Mimecast security logs into a durable spool and delivers them to SIEMs."""

__version__ = "0.1.0"

__all__ = ["__version__"]
