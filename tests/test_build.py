"""The optional mypyc build: what it compiles, what a plain build asks for, and that a plain build
never leaves compiled modules behind to shadow edited sources."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def setup_py() -> ModuleType:
    return load("collector_setup_py", ROOT / "setup.py")


@pytest.fixture
def backend() -> ModuleType:
    sys.path.insert(0, str(ROOT / "build_support"))
    try:
        return load("collector_build_backend", ROOT / "build_support" / "backend.py")
    finally:
        sys.path.remove(str(ROOT / "build_support"))


def test_every_per_event_module_is_compiled_and_nothing_with_io(setup_py: ModuleType) -> None:
    modules = set(setup_py.hot_modules())
    logtypes = {f"collector/logtypes/{p.name}" for p in (ROOT / "collector" / "logtypes").glob("*.py")}
    assert logtypes - modules == {"collector/logtypes/__init__.py"}
    assert {"collector/timeutil.py", "collector/encodings/cef.py", "collector/encodings/leef.py"} <= modules
    assert not any(m.startswith(("collector/state", "collector/api", "collector/sinks")) for m in modules)


def test_only_a_compiled_build_asks_for_mypy(backend: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """The backend adds mypy and orjson to setuptools' own requirements only when compiling, and
    setuptools' setup.py run (here a stand-in: the machine's setuptools may predate pyproject's
    license field) sees the flag that tells setup.py not to compile yet."""
    seen: list[str | None] = []

    def setuptools_hook(config_settings: dict[str, object] | None) -> list[str]:
        seen.append(os.environ.get("_MIMECAST_COLLECTOR_REQUIRES_ONLY"))
        return ["wheel"]

    monkeypatch.delenv("MIMECAST_COLLECTOR_COMPILE", raising=False)
    assert backend._requires(setuptools_hook, None) == ["wheel"]
    monkeypatch.setenv("MIMECAST_COLLECTOR_COMPILE", "1")
    assert backend._requires(setuptools_hook, None) == ["wheel", "mypy>=1.10", "orjson>=3.9"]
    assert seen == ["1", "1"]
    assert "_MIMECAST_COLLECTOR_REQUIRES_ONLY" not in os.environ


def test_a_plain_build_removes_compiled_modules_left_in_the_tree(
    setup_py: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(ROOT / "collector", tmp_path / "collector", ignore=shutil.ignore_patterns("__pycache__"))
    suffix = ".cpython-311-x86_64-linux-gnu.so"
    stale = [
        tmp_path / "collector" / "logtypes" / f"ttp_url{suffix}",
        tmp_path / "collector" / f"_compiled__mypyc{suffix}",
    ]
    kept = tmp_path / "collector" / "state" / f"other{suffix}"  # not ours to delete
    for path in [*stale, kept]:
        path.write_bytes(b"\x7fELF")
    assert sorted(setup_py.compiled_in_tree(tmp_path)) == sorted(stale)
    monkeypatch.delenv("MIMECAST_COLLECTOR_COMPILE", raising=False)
    assert setup_py.ext_modules(tmp_path) == []
    assert not any(p.exists() for p in stale)
    assert kept.exists()
