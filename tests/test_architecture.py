"""The import graph keeps the pipeline's rooms apart (issue 12).

Read with `ast` from the source of aggregator/: top-level and function-level imports
both count; imports under `if TYPE_CHECKING:` do not (they never run).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "aggregator"
STAGES = (
    "fetch", "parse", "dedupe", "classify", "publish", "serve", "schedule", "pipeline",
    "poll", "ingest",
)  # fmt: skip
PIPE = ("fetch", "parse", "dedupe", "store", "classify", "publish")  # what a pipeline runs
SEQUENCERS = {"aggregator.pipeline", "aggregator.cli", "aggregator.schedule"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported(name: str) -> set[str]:
    """The aggregator modules `name` imports."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    [*package.split(".")[: len(package.split(".")) - node.level + 1], base]
                ).rstrip(".")
            # `from package import module` imports the module; `from module import name`
            # the module.
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.add(submodule if submodule in MODULES else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return {module for module in found if module in MODULES and module != name}


GRAPH = {name: imported(name) for name in MODULES}


def room(module: str) -> str | None:
    """The stage a module belongs to: `aggregator.store.items` -> "store"."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_the_graph_is_read():
    assert "aggregator.store" in GRAPH["aggregator.pipeline"]
    assert "aggregator.dedupe" in GRAPH["aggregator.pipeline"]


def test_the_store_imports_no_stage():
    wrong = {
        (name, other)
        for name, others in GRAPH.items()
        if room(name) == "store"
        for other in others
        if room(other) in STAGES
    }
    assert wrong == set()


def test_fetch_parse_dedupe_and_classify_import_no_store():
    wrong = {
        (name, other)
        for name, others in GRAPH.items()
        if room(name) in ("fetch", "parse", "dedupe", "classify")
        for other in others
        if room(other) == "store"
    }
    assert wrong == set()


def test_only_the_pipeline_and_its_callers_import_several_stages_of_the_pipe():
    several = {
        name: sorted({room(other) for other in others} & set(PIPE) - {room(name)})
        for name, others in GRAPH.items()
        if name not in SEQUENCERS
    }
    assert {name: rooms for name, rooms in several.items() if len(rooms) > 1} == {}


def test_no_import_cycles():
    cycles = []
    state: dict[str, str] = {}

    def walk(name: str, path: list[str]) -> None:
        state[name] = "open"
        for other in sorted(GRAPH[name]):
            if state.get(other) == "open":
                cycles.append([*path[path.index(other) :], other])
            elif other not in state:
                walk(other, [*path, other])
        state[name] = "done"

    for name in sorted(GRAPH):
        if name not in state:
            walk(name, [name])
    assert cycles == []


def test_a_command_that_fetches_nothing_loads_no_http_client_or_metrics():
    """Every command imports the pipeline (to sync sources); httpx, prometheus-client, the
    parser and the renderers load only when a command fetches, counts, parses or publishes."""
    heavy = ("httpx", "prometheus_client", "feedparser", "lxml", "feedgen", "trafilatura")
    code = (
        "import sys, aggregator.cli, aggregator.pipeline\n"
        f"print(' '.join(m for m in {heavy!r} if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert loaded == []
