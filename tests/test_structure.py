"""The package's shape: no import cycles, no private names across modules, small modules, registries that every
tool reads, the stored TRL field schema equal to the installed classes, and every docstring example run."""

from __future__ import annotations

import ast
import doctest
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

PACKAGE = REPO / "src" / "kotune"
MAX_LINES = 350


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def kotune_imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) for every `import kotune...` / `from kotune... import ...`, at any depth (in functions too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kotune"):
            found.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.startswith("kotune")]
    return found


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for name, path in MODULES.items():
        edges = set()
        for module, names in kotune_imports(path):
            for imported in names:  # `from kotune.data import report` imports the module kotune.data.report
                if f"{module}.{imported}" in MODULES:
                    edges.add(f"{module}.{imported}")
            if module in MODULES:
                edges.add(module)
        graph[name] = {e for e in edges if e != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycles_even_through_function_level_imports():
    graph = import_graph()
    assert all(target in MODULES for targets in graph.values() for target in targets), "imports of missing modules"
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_no_private_names_imported_from_another_module():
    offenders = [f"{name}: from {module} import {n}" for name, path in MODULES.items()
                 for module, names in kotune_imports(path) for n in names if n.startswith("_")]
    assert not offenders, offenders


def test_no_module_over_the_size_limit():
    sizes = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in MODULES.items()}
    assert not {n: s for n, s in sizes.items() if s > MAX_LINES}, sorted(sizes.items(), key=lambda kv: -kv[1])[:5]


def test_config_layer_is_light():
    """A typo must be reported before torch, transformers or TRL load: the config check, the registries and the
    CLI import none of them."""
    code = ("import sys; import kotune.cli, kotune.config.validation, kotune.config.loading; "
            "heavy = [m for m in ('torch', 'transformers', 'trl', 'datasets', 'peft') if m in sys.modules]; "
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_stored_library_fields_match_the_installed_classes():
    """library_fields.json is what the fast check reads; after a version bump, rebuild it (the message says how)."""
    from kotune.config.library_schema import live, stored

    current = json.loads(json.dumps(live(), default=str))
    assert current == stored(), "run: python -m kotune.config --write-library-fields"


def test_every_stage_is_wired_from_the_registry():
    from kotune.cli import main as kotune
    from kotune.config.library_schema import fields_of
    from kotune.stages.registry import STAGES

    for stage in STAGES.values():
        module, _, function = stage.runner.partition(":")
        assert callable(getattr(importlib.import_module(module), function))
        assert (REPO / stage.entry_script).is_file()
        assert fields_of(stage.training_config)  # its keys are in the stored schema
        assert "launch.sh: first argument" not in subprocess.run(
            [str(REPO / "launch.sh"), stage.name, "configs/sft/polyglot-ko-tiny-demo.yaml", "--dry-run"], cwd=REPO,
            capture_output=True, text=True, timeout=60).stderr
        assert kotune([stage.name, "--help"]) == 0


DOCTESTED = [name for name, path in MODULES.items() if ">>> " in path.read_text(encoding="utf-8")]


@pytest.mark.parametrize("name", DOCTESTED)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted and not result.failed
