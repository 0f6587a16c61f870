"""Optional compiled hot path: with ``MIMECAST_COLLECTOR_COMPILE=1`` the per-event code (log type
normalizers, time parsing, CEF/LEEF encoders) is compiled with mypyc, about 2.5x faster per event.
Without it (the default) everything is pure Python and no compiler is needed. Both run the same
source, and CI tests both. The rest of the project's metadata is in pyproject.toml."""

from __future__ import annotations

import os
from pathlib import Path

from setuptools import setup

COMPILE_ENV = "MIMECAST_COLLECTOR_COMPILE"
ROOT = Path(__file__).parent


def hot_modules(root: Path = ROOT) -> list[str]:
    """What runs once per event: pure, CPU-bound, no I/O. Package __init__ modules stay Python."""
    package = root / "collector"
    found = [*sorted((package / "logtypes").glob("*.py")), *sorted((package / "encodings").glob("*.py"))]
    modules = [p for p in found if p.name != "__init__.py"] + [package / "timeutil.py"]
    return [str(p.relative_to(root)) for p in modules]


# The library the compiled modules share lives inside the package (collector/_compiled__mypyc*.so), not
# at the top level, so an editable install's import finder, which maps only `collector`, finds it.
GROUP_NAME = "collector._compiled"


def compiled_in_tree(root: Path = ROOT) -> list[Path]:
    """Compiled modules an earlier editable build left beside the sources."""
    hot = {Path(name).with_suffix("") for name in hot_modules(root)}
    return [
        p
        for p in (root / "collector").rglob("*.so")
        if p.name.startswith("_compiled__mypyc.") or p.relative_to(root).with_name(p.name.split(".")[0]) in hot
    ]


def ext_modules(root: Path = ROOT) -> list[object]:
    if os.environ.get(COMPILE_ENV, "").strip().lower() not in ("1", "true", "yes"):
        # A pure build must not leave compiled copies behind: Python imports a module's .so before
        # its .py, so an edited source would silently run as its stale compiled self.
        for stale in compiled_in_tree(root):
            stale.unlink()
        return []
    if os.environ.get("_MIMECAST_COLLECTOR_REQUIRES_ONLY"):  # build_support/backend.py: mypy comes next
        return []
    from mypyc.build import mypycify  # noqa: PLC0415 - only when asked for: a plain install needs neither mypy nor gcc

    return list(mypycify(hot_modules(root), opt_level="3", group_name=GROUP_NAME))


if __name__ == "__main__":  # as setuptools runs it; tests import the functions above
    setup(ext_modules=ext_modules())
