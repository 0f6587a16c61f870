"""Running it unattended: assembly and shutdown (app), health and metrics endpoints, systemd
notifications, telemetry, and the ``status`` report.

Every stage reports to :class:`Telemetry`, so this ``__init__`` re-exports only that light module;
the entry points import ``collector.service.app`` and the others by their module path, so no stage
that reports a metric drags the whole assembly in.
"""

from collector.service.telemetry import StreamHealth, Telemetry

__all__ = ["StreamHealth", "Telemetry"]
