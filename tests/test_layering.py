"""Imports between our top-level packages run one way (issue 12, "the house").

``lint-imports`` checks the contracts in ``pyproject.toml``: api over control, workflows,
activities, gateway and core; ``core`` imports none of ours but ``runtime/schema.py``; the
runtime and the gateway stand alone; the control plane reaches the gateway only through
``gateway.control``. import-linter cannot take single modules as roots, so the top-level
``cli.py``, ``client.py`` and ``worker.py`` (the top floor) are checked here: no package
imports them.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["api", "control", "core", "workflows", "activities", "gateway", "runtime"]
TOP_MODULES = {"cli", "client", "worker"}


def test_import_contracts_are_kept() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    run = subprocess.run(
        [str(lint_imports), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout
    # Every contract ran (a contract dropped from pyproject.toml would pass silently).
    assert "Contracts: 5 kept" in run.stdout


def _imported(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_no_package_imports_the_top_level_modules() -> None:
    offenders = []
    for package in PACKAGES:
        for file in sorted((ROOT / package).rglob("*.py")):
            if TOP_MODULES & _imported(ast.parse(file.read_text(), str(file))):
                offenders.append(str(file.relative_to(ROOT)))
    assert offenders == []


def test_core_is_the_ground_floor_even_inside_functions() -> None:
    """A lazy import inside a function counts too (import-linter sees those as well)."""
    ours = set(PACKAGES) | TOP_MODULES | {"bundles"}
    found = {}
    for file in sorted((ROOT / "core").rglob("*.py")):
        tree = ast.parse(file.read_text(), str(file))
        bad = (_imported(tree) & ours) - {"core", "runtime"}
        if bad:
            found[str(file.relative_to(ROOT))] = sorted(bad)
    assert found == {}
