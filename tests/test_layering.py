"""Lower layers never import higher ones (docs/architecture.md), checked on the source.

Every module of a subpackage is parsed with ``ast`` and every ``import`` / ``from ...
import`` in it is collected, also those inside functions (lazy imports) and under
``TYPE_CHECKING``: a lazy import of a higher layer is still a dependency on it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import cxr_curriculum

PACKAGE = Path(cxr_curriculum.__file__).parent

#: subpackage -> subpackages it must not import (``cxr_curriculum.<name>``).
FORBIDDEN = {
    "stats": {
        "data", "transforms", "backbones", "losses", "methods", "curriculum", "segmentation",
        "attention", "evaluation", "study", "config", "demo",
    },
    "curriculum": {"evaluation", "attention", "segmentation", "study", "config", "demo"},
    "evaluation": {"curriculum", "attention", "study", "config", "demo"},
    "attention": {"curriculum", "methods", "evaluation", "study", "config", "demo"},
}  # fmt: skip


def imported_modules(path: Path, package: str) -> set[str]:
    """Absolute names of every module imported anywhere in the file at ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's package
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return out


def _layer(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "cxr_curriculum" else None


@pytest.mark.parametrize("subpackage", sorted(FORBIDDEN))
def test_lower_layers_do_not_import_higher_ones(subpackage: str) -> None:
    files = sorted((PACKAGE / subpackage).rglob("*.py"))
    assert files, subpackage
    found = []
    for path in files:
        package = "cxr_curriculum." + ".".join(path.relative_to(PACKAGE).parent.parts)
        for name in imported_modules(path, package):
            if _layer(name) in FORBIDDEN[subpackage]:
                found.append(f"{path.relative_to(PACKAGE)}: {name}")
            if name == "cxr_curriculum":  # the top level re-exports every layer
                found.append(f"{path.relative_to(PACKAGE)}: cxr_curriculum")
    assert not found, found


def test_the_checker_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    source = tmp_path / "mod.py"
    source.write_text(
        "def f():\n"
        "    from cxr_curriculum.evaluation import knn_evaluate\n"
        "    from ..study import rank_orders\n"
        "    import cxr_curriculum.attention.scorer\n"
    )
    names = imported_modules(source, "cxr_curriculum.curriculum")
    assert {_layer(n) for n in names} >= {"evaluation", "study", "attention"}
