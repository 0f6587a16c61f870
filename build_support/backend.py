"""The build backend: setuptools, plus mypy and orjson as build requirements when the hot path is
compiled (``MIMECAST_COLLECTOR_COMPILE=1``). A plain ``pip install`` asks for neither and needs no
compiler; setup.py decides what is compiled."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from setuptools import build_meta as _setuptools
from setuptools.build_meta import (
    build_editable,
    build_sdist,
    build_wheel,
    get_requires_for_build_sdist,
    prepare_metadata_for_build_editable,
    prepare_metadata_for_build_wheel,
)

__all__ = [
    "build_editable",
    "build_sdist",
    "build_wheel",
    "get_requires_for_build_editable",
    "get_requires_for_build_sdist",
    "get_requires_for_build_wheel",
    "prepare_metadata_for_build_editable",
    "prepare_metadata_for_build_wheel",
]

COMPILE_ENV = "MIMECAST_COLLECTOR_COMPILE"
# mypyc comes with mypy; orjson's type stubs make the compiled code call it with its real types.
COMPILE_REQUIRES = ["mypy>=1.10", "orjson>=3.9"]


# setuptools runs setup.py to find its requirements, before mypy is installed: setup.py then
# skips compiling (a real build without mypyc fails loudly instead).
REQUIRES_ONLY_ENV = "_MIMECAST_COLLECTOR_REQUIRES_ONLY"


def compile_requested() -> bool:
    return os.environ.get(COMPILE_ENV, "").strip().lower() in ("1", "true", "yes")


def _requires(hook: Callable[[dict[str, Any] | None], list[str]], config_settings: dict[str, Any] | None) -> list[str]:
    os.environ[REQUIRES_ONLY_ENV] = "1"
    try:
        found = hook(config_settings)
    finally:
        del os.environ[REQUIRES_ONLY_ENV]
    return [*found, *(COMPILE_REQUIRES if compile_requested() else [])]


def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    return _requires(_setuptools.get_requires_for_build_wheel, config_settings)


def get_requires_for_build_editable(config_settings: dict[str, Any] | None = None) -> list[str]:
    return _requires(_setuptools.get_requires_for_build_editable, config_settings)
