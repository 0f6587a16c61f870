"""The package tree is the data flow: which stage may import which, checked on the real source.

Stages, in the order data flows (README "How it works"): config -> api -> logtypes -> collect ->
state -> delivery -> sinks, with encodings (used by delivery and sinks), workers (log types run in
other processes, for collect), service (runs it all) and simulator (the loopback API) beside them.
Every module's imports, function-level ones included, are read from its source; a new arrow that
runs back up fails here instead of in a review.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import collector

PACKAGE = Path(collector.__file__).parent
HELPERS = {"logs", "timeutil", "tls"}  # small helpers every stage uses
ENTRY_POINTS = {"__init__", "__main__", "cli", "demo"}
TELEMETRY = "service.telemetry"  # every stage reports to it; it imports no stage

#: stage -> the stages it may import (besides itself, the helpers and the telemetry).
ALLOWED: dict[str, set[str]] = {
    "config": {"logtypes"},  # stream names and filters are checked against the log types' declarations
    "api": {"config"},
    "logtypes": set(),
    "collect": {"config", "api", "logtypes", "state", "workers"},
    "state": {"config", "logtypes"},
    "delivery": {"config", "state", "sinks", "encodings"},
    "sinks": {"config", "encodings"},
    "encodings": {"config", "logtypes"},
    # A worker process imports nothing else; of api only jsonbody, which loads no HTTP client (below).
    "workers": {"logtypes", "api"},
    "service": {"config", "api", "logtypes", "collect", "state", "delivery", "sinks", "encodings", "workers"},
    "simulator": {"config", "api", "logtypes"},
}


def _modules() -> dict[str, Path]:
    """Dotted name below ``collector`` -> file, for every module of the package."""
    return {".".join(p.relative_to(PACKAGE).with_suffix("").parts): p for p in PACKAGE.rglob("*.py")}


def _imports(path: Path) -> set[str]:
    """Every ``collector.*`` module ``path`` imports, as dotted names below ``collector``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("collector."))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "collector":  # `from collector import __version__` is the package itself
                found.update(f"collector.{a.name}" for a in node.names if (PACKAGE / f"{a.name}.py").exists())
            elif node.module.startswith("collector."):
                found.add(node.module)
    return {name.removeprefix("collector.") for name in found}


def _stage(module: str) -> str:
    """The stage a module belongs to: its package, or its own name at top level."""
    if module == TELEMETRY or module.startswith(TELEMETRY + "."):
        return TELEMETRY
    return module.split(".", 1)[0].removesuffix(".__init__")


def test_top_level_holds_only_entry_points_and_helpers() -> None:
    """Every other module lives in the package of its stage."""
    top = {p.stem for p in PACKAGE.glob("*.py")}
    assert top - ENTRY_POINTS - HELPERS == set()


def test_every_stage_is_a_package_with_a_docstring() -> None:
    """Each stage's ``__init__`` says in a line or two what the stage does."""
    for stage in ALLOWED:
        init = PACKAGE / stage / "__init__.py"
        assert init.is_file(), stage
        assert ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))), stage


def test_imports_follow_the_stage_table() -> None:
    """No stage imports one the table does not allow (config and api never import state, delivery or sinks)."""
    wrong = []
    for module, path in _modules().items():
        stage = _stage(module)
        if stage in ENTRY_POINTS or stage in HELPERS or stage == TELEMETRY:
            continue  # entry points may import anything; helpers and telemetry have their own test
        for imported in _imports(path):
            target = _stage(imported)
            if target in {stage, TELEMETRY, *HELPERS} or target in ALLOWED.get(stage, set()):
                continue
            wrong.append(f"{module} imports {imported}")
    assert wrong == []


def test_helpers_and_telemetry_import_no_stage() -> None:
    """The shared helpers sit under everything and import no stage; the telemetry only the error root."""
    for module, path in _modules().items():
        if module in HELPERS:
            assert {_stage(i) for i in _imports(path)} <= HELPERS, module
        if module == TELEMETRY:
            assert _imports(path) <= {*HELPERS, "config.errors"}, module


def test_stage_graph_has_no_cycles() -> None:
    """Stages depend on each other in one direction only."""
    edges: dict[str, set[str]] = {}
    for module, path in _modules().items():
        stage = _stage(module)
        if stage in ENTRY_POINTS:
            continue
        edges.setdefault(stage, set()).update(_stage(i) for i in _imports(path) if _stage(i) != stage)
    visiting: set[str] = set()
    done: set[str] = set()

    def visit(node: str, trail: tuple[str, ...]) -> None:
        assert node not in visiting, " -> ".join((*trail, node))
        if node in done:
            return
        visiting.add(node)
        for nxt in edges.get(node, set()):
            visit(nxt, (*trail, node))
        visiting.discard(node)
        done.add(node)

    for stage in edges:
        visit(stage, ())


def test_a_worker_process_loads_no_http_client() -> None:
    """What a worker imports (its package, the log types, api.jsonbody) stays free of aiohttp: the
    api package loads its exports on first use, so a worker starts in ~0.14 s and ~26 MiB."""
    probe = "import sys, collector.workers; print(sorted(m for m in sys.modules if m.split('.')[0] == 'aiohttp'))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
