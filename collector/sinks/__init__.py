"""Sinks: deliver encoded batches to a target (file, syslog, HTTP, Splunk HEC, Elasticsearch).

The registry is keyed by the ``type`` a ``[sinks.<name>]`` table names; importing this package
registers each sink's settings with the config loader.
"""

from __future__ import annotations

from collections.abc import Mapping

from collector.config.sinks import register_sink_settings
from collector.sinks import elasticsearch, file, http, splunk_hec, syslog
from collector.sinks.base import OutEvent, Sink, SinkContext, SinkPlugin, SinkSettings

SINK_TYPES: Mapping[str, SinkPlugin] = {
    plugin.kind: plugin for plugin in (file.PLUGIN, syslog.PLUGIN, http.PLUGIN, splunk_hec.PLUGIN, elasticsearch.PLUGIN)
}
for _plugin in SINK_TYPES.values():
    register_sink_settings(_plugin.kind, _plugin.settings)


def create_sink(settings: SinkSettings, context: SinkContext) -> Sink:
    return SINK_TYPES[settings.type].factory(settings, context)


__all__ = ["SINK_TYPES", "OutEvent", "Sink", "SinkContext", "SinkPlugin", "SinkSettings", "create_sink"]
