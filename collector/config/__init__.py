"""Configuration: TOML into frozen, fully validated models; the first stage, which every other may use.

Sink types register their settings here (:func:`register_sink_settings`), so config never imports a sink.
"""

from collector.config.errors import CollectorError, ConfigError
from collector.config.loader import load_config
from collector.config.model import AccountConfig, Config, ServiceConfig, StateConfig, StreamOptions
from collector.config.options import Secret
from collector.config.sinks import FORMATS, SinkSettings, register_sink_settings

__all__ = [
    "FORMATS",
    "AccountConfig",
    "CollectorError",
    "Config",
    "ConfigError",
    "Secret",
    "ServiceConfig",
    "SinkSettings",
    "StateConfig",
    "StreamOptions",
    "load_config",
    "register_sink_settings",
]
