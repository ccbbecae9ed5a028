"""The package's layers, read from the code's own imports (every import, top level or inside a
function): commands stand side by side and nothing below them imports one."""

from __future__ import annotations

import ast
from pathlib import Path

RUNNER = Path(__file__).resolve().parent.parent / "runner"


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m.startswith("runner")}


def _module(path: Path) -> str:
    return ".".join(path.relative_to(RUNNER.parent).with_suffix("").parts)


MODULES = {_module(p): _imports(p) for p in RUNNER.rglob("*.py")}


def test_commands_never_import_each_other():
    commands = {m for m in MODULES if m.startswith("runner.commands.") and not m.endswith(("__init__", "_output"))}
    for m in commands:
        other = {i for i in MODULES[m] if any(i == c or i.startswith(c + ".") for c in commands - {m})}
        assert not other, f"{m} imports {other}"


def test_nothing_below_the_commands_imports_them():
    above = ("runner.commands", "runner.cli", "runner.bench")   # the entry points and the benchmarks
    for m, imports in MODULES.items():
        if m.startswith(above):
            continue
        bad = {i for i in imports if i.startswith(("runner.commands", "runner.cli"))}
        assert not bad, f"{m} imports {bad}"


def test_the_pipeline_and_the_layers_under_it_do_not_reach_up():
    upper = ("runner.plan", "runner.session", "runner.rows", "runner.report", "runner.jobs")
    for m, imports in MODULES.items():
        if m.startswith(("runner.pipeline", "runner.generation", "runner.graders", "runner.scenarios",
                         "runner.checkpoints", "runner.grid", "runner.config")):
            bad = {i for i in imports if i.startswith(upper)}
            assert not bad, f"{m} imports {bad}"
