"""Time formats: Mimecast request dates, HMAC header dates, ECS timestamps.

Windows are whole epoch seconds: the API speaks second precision, so fractional boundaries would
only hide events that share the boundary second.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def api_date(epoch_secs: int) -> str:
    """Request date as the API wants it: ``2015-11-16T14:49:18+0000``."""
    moment = datetime.fromtimestamp(epoch_secs, UTC)
    return f"{moment.year:04d}-{moment:%m-%dT%H:%M:%S}+0000"


def hmac_date(epoch_secs: float) -> str:
    """``x-mc-date`` value, e.g. ``Tue, 24 Nov 2015 12:50:11 UTC``; built by hand so no locale leaks in."""
    d = datetime.fromtimestamp(int(epoch_secs), UTC)
    return f"{_DAYS[d.weekday()]}, {d.day:02d} {_MONTHS[d.month - 1]} {d.year} {d:%H:%M:%S} UTC"


def parse_hmac_date(text: str) -> datetime:
    """Inverse of :func:`hmac_date` (used by the simulator to check clock skew)."""
    _, rest = text.split(", ", 1)
    day, month, year, clock, zone = rest.split(" ")
    if zone != "UTC":
        raise ValueError(f"x-mc-date must end in UTC, got {zone!r}")
    hours, minutes, seconds = (int(p) for p in clock.split(":"))
    return datetime(int(year), _MONTHS.index(month) + 1, int(day), hours, minutes, seconds, tzinfo=UTC)


def parse_api_date(text: str) -> datetime:
    """Parse a date from an API answer (``2024-11-13T13:03:11+0000`` and ISO variants); always aware."""
    parsed = datetime.fromisoformat(text.strip())
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_request_date(text: str) -> int:
    """Strict parse of a request date (simulator side): exactly ``YYYY-MM-DDTHH:MM:SS+0000``."""
    parsed = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S%z")
    if not text.endswith("+0000") or len(text) != 24:
        raise ValueError(f"date {text!r} is not in the form 2015-11-16T14:49:18+0000")
    return int(parsed.timestamp())


def parse_config_time(text: str) -> int:
    """Parse a config timestamp (ISO 8601, ``Z`` or an offset; naive means UTC) into epoch seconds."""
    return int(parse_api_date(text).timestamp())


def ecs_timestamp(moment: datetime) -> str:
    """ECS ``@timestamp``: UTC with milliseconds and a ``Z``."""
    utc = moment.astimezone(UTC)
    return f"{utc.year:04d}-{utc:%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


def iso(epoch_secs: float) -> str:
    """Human-readable UTC time for logs and ``status``."""
    return datetime.fromtimestamp(int(epoch_secs), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_MAX_DOUBLINGS = 30  # far past any cap; an uncapped exponent overflows a float at 1024


def doubling_secs(first_secs: float, n: int, max_secs: float) -> float:
    """``first_secs`` doubled for each step after the first (``n`` is 1-based), at most ``max_secs``.

    Retry and 429 counters have no bound (retries never give up); the exponent has one.
    """
    return min(max_secs, first_secs * 2.0 ** min(n - 1, _MAX_DOUBLINGS))


BACKOFF_BASE_SECS = 0.5


def backoff_secs(attempt: int, max_secs: float, rng: random.Random) -> float:
    """The wait before retry number ``attempt`` (1-based): doubling from 0.5 s up to ``max_secs``,
    jittered to 50-100% so retries from many tasks spread out."""
    return doubling_secs(BACKOFF_BASE_SECS, attempt, max_secs) * rng.uniform(0.5, 1.0)
