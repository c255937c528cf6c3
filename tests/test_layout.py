"""The layering docs/ARCHITECTURE.md draws ("Layers"), checked on the source: what imports what,
the sample generator outside the product, and no module a newcomer cannot read in one sitting."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PRODUCT = ("curation", "workbench", "trainer")
MAX_LINES = 800


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def imported(path: Path) -> set[str]:
    """Every module name `path` imports (absolute names; relative imports resolved in its package)."""
    names: set[str] = set()
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
    return names


def test_no_product_module_is_over_800_lines() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for pkg in PRODUCT
        for p in modules(pkg)
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, long


def test_the_sample_generator_lives_outside_the_product() -> None:
    assert (ROOT / "datasets" / "tickets" / "__init__.py").exists()
    assert not (ROOT / "datasets" / "__init__.py").exists()  # it must never shadow the datasets library
    users = [
        f"{p.relative_to(ROOT)}: {n}"
        for pkg in PRODUCT
        for p in modules(pkg)
        for n in sorted(imported(p))
        if n.split(".")[0] == "tickets" or n.startswith("curation.tickets")
    ]
    assert not users, users


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("curation", ("workbench", "trainer", "streamlit", "duckdb")),
        ("trainer", ("workbench", "streamlit", "duckdb")),
        ("workbench/store", ("workbench.services", "workbench.app_pages", "workbench.commands", "workbench.cli")),
        ("workbench/services", ("workbench.app_pages", "workbench.commands", "workbench.cli", "streamlit")),
    ],
)
def test_nothing_imports_upwards(package: str, forbidden: tuple[str, ...]) -> None:
    hits = [
        f"{p.relative_to(ROOT)}: {name}"
        for p in modules(package)
        for name in sorted(imported(p))
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    ]
    assert not hits, hits


def test_no_public_service_method_returns_a_bare_dict() -> None:
    """Typed results at the service seam: a use case returns a `Result` dataclass (its `to_dict()`
    is the `--json` object), never `dict[...]` that callers index by key."""
    bare = []
    for path in modules("workbench/services"):
        for cls in ast.parse(path.read_text(encoding="utf-8")).body:
            if not isinstance(cls, ast.ClassDef) or not (cls.name.endswith("Service") or cls.name == "Workbench"):
                continue
            for fn in cls.body:
                if isinstance(fn, ast.FunctionDef) and not fn.name.startswith("_") and fn.returns is not None:
                    annotation = ast.unparse(fn.returns)
                    if annotation == "dict" or annotation.startswith("dict["):
                        bare.append(f"{path.name}: {cls.name}.{fn.name} -> {annotation}")
    assert bare == []


def test_a_result_keeps_its_json_shape() -> None:
    """`to_dict()`: fields in declared order, nested results and lists of them as dicts, an
    `optional()` key left out while None (and kept when set, even to a falsy value)."""
    from dataclasses import dataclass

    from workbench.services.results import Result, optional

    @dataclass(frozen=True)
    class Inner(Result):
        n: int

    @dataclass(frozen=True)
    class Outer(Result):
        b: Inner
        a: list[Inner]
        rows: list[dict[str, int]]
        extra: int | None = optional()

    out = Outer(Inner(1), [Inner(2)], [{"x": 3}])
    assert list(out.to_dict().items()) == [("b", {"n": 1}), ("a", [{"n": 2}]), ("rows", [{"x": 3}])]
    assert Outer(Inner(1), [], [], extra=0).to_dict()["extra"] == 0
    d = out.to_dict()
    d["rows"][0]["x"] = 99  # the dict is a copy: changing it leaves the result as it was
    assert out.rows == [{"x": 3}]
