"""Configuration: TOML into frozen, fully validated models."""

from collector.config.loader import load_config
from collector.config.model import AccountConfig, Config, ServiceConfig, StateConfig, StreamOptions
from collector.config.options import Secret

__all__ = [
    "AccountConfig",
    "Config",
    "Secret",
    "ServiceConfig",
    "StateConfig",
    "StreamOptions",
    "load_config",
]
