"""Collecting: one generic poller per stream (account x log type) that pages through the API and
commits each page's events with the stream's next position in one transaction."""

from collector.collect.poller import Poller, StreamSpec

__all__ = ["Poller", "StreamSpec"]
