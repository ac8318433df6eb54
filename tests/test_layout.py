"""The one-way house: every package imports only the layers below it, modules stay small, and imports sit at the
top of their module unless there is a stated reason (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Each top-level package and the packages of ours it may import. common imports none of them; the domain
# packages (ingestion, warehouse, insights, dashboards) only common, and: warehouse ingestion's bucket listing and
# suppression list and the insights copy it erases from; dashboards the insights engine it serves. orchestration
# is the Dagster wiring above them; the CLI and bench sit on top; testing serves tests and bench.
DOMAIN = {"common", "ingestion", "warehouse", "insights", "dashboards"}
ALLOWED = {
    "common": set(),
    "ingestion": {"common"},
    "warehouse": {"common", "ingestion", "insights"},
    "insights": {"common"},
    "dashboards": {"common", "insights"},
    "orchestration": DOMAIN,
    "cli": DOMAIN | {"orchestration"},
    "testing": DOMAIN | {"orchestration"},
    "bench": DOMAIN | {"orchestration", "cli", "testing"},
    "tests": DOMAIN | {"orchestration", "cli", "testing"},
}
OURS = set(ALLOWED)
MAX_MODULE_LINES = 500
MAX_FUNCTION_IMPORTS = 60


def modules() -> list[Path]:
    return sorted(path for package in OURS for path in (ROOT / package).rglob("*.py"))


def imported_packages(tree: ast.AST) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found & OURS


def function_imports(source: str) -> list[tuple[int, str, str]]:
    """(line, its text, the line above) of every import inside a function of `source`."""
    lines = ["", *source.splitlines()]
    found = set()
    for function in ast.walk(ast.parse(source)):
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            for node in ast.walk(function):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    found.add((node.lineno, lines[node.lineno], lines[node.lineno - 1]))
    return sorted(found)


def test_the_layers_are_all_there():
    assert len(modules()) > 80
    assert {path.relative_to(ROOT).parts[0] for path in modules()} == OURS


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_flow_one_way(package):
    upward = {}
    for path in (ROOT / package).rglob("*.py"):
        wrong = imported_packages(ast.parse(path.read_text())) - ALLOWED[package] - {package}
        if wrong:
            upward[str(path.relative_to(ROOT))] = sorted(wrong)
    assert upward == {}, f"{package} may import only {sorted(ALLOWED[package])}"


# Module names of a higher layer written as strings (a process started with `python -m ...`) are upward dependencies
# the imports do not show. The one there is: the dashboards API starts each CSV export as a Dagster run in a process
# of its own, `python -m orchestration.defs.exports` (docs/architecture.md).
ALLOWED_UPWARD_STRINGS = {"dashboards/exports.py": {"orchestration.defs.exports"}}


def upward_strings(tree: ast.AST, allowed: set[str]) -> set[str]:
    above = OURS - allowed
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and "." in node.value  # a dotted module path, not a word that happens to name a package
        and node.value.split(".")[0] in above
        and node.value.replace(".", "").replace("_", "").isalnum()
    }


@pytest.mark.parametrize("package", ["common", "ingestion", "warehouse", "dashboards"])
def test_no_module_of_a_higher_layer_is_started_by_name(package):
    found = {}
    for path in (ROOT / package).rglob("*.py"):
        where = str(path.relative_to(ROOT))
        names = upward_strings(ast.parse(path.read_text()), ALLOWED[package] | {package})
        names -= ALLOWED_UPWARD_STRINGS.get(where, set())
        if names:
            found[where] = sorted(names)
    assert found == {}


def test_no_module_over_500_lines_outside_tests():
    long = {
        str(path.relative_to(ROOT)): n
        for path in modules()
        if path.relative_to(ROOT).parts[0] != "tests" and (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_imports_inside_functions_are_few_and_say_why():
    inside = {
        f"{path.relative_to(ROOT)}:{line}": (text, above)
        for path in modules()
        for line, text, above in function_imports(path.read_text())
    }
    assert len(inside) <= MAX_FUNCTION_IMPORTS, sorted(inside)
    # each one is an optional dependency or a start-up cost, and its line (or the one above) says so
    unexplained = [where for where, (text, above) in inside.items() if "#" not in text and "#" not in above]
    assert unexplained == []


def test_the_checks_can_fail():
    # the walkers see what they are meant to see
    tree = ast.parse("import os\nfrom orchestration.runs import x\n\ndef f():\n    import dashboards.app  # lazy\n")
    assert imported_packages(tree) == {"orchestration", "dashboards"}
    assert function_imports("import os\n\ndef f():\n    # why\n    import ast\n") == [
        (5, "    import ast", "    # why")
    ]
