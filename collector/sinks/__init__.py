"""Sink registry, keyed by the ``type`` a ``[sinks.<name>]`` table names."""

from __future__ import annotations

from collections.abc import Mapping

from collector.sinks import file
from collector.sinks.base import OutEvent, Sink, SinkPlugin, SinkSettings

SINK_TYPES: Mapping[str, SinkPlugin] = {plugin.kind: plugin for plugin in (file.PLUGIN,)}


def create_sink(settings: SinkSettings) -> Sink:
    return SINK_TYPES[settings.type].factory(settings)


__all__ = ["SINK_TYPES", "OutEvent", "Sink", "SinkPlugin", "SinkSettings", "create_sink"]
