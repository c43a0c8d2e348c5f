"""The code's own rules on imports and references, beyond the layer contracts that `lint-imports` checks."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(
    [*ROOT.glob("reid/**/*.py"), *ROOT.glob("scripts/*.py"), *ROOT.glob("*.py")]  # entry scripts at the root
)
CITING = sorted(
    [
        *SOURCES,
        *ROOT.glob("configs/**/*.yaml"),
        *ROOT.glob("tests/**/*.py"),
        ROOT / "README.md",
        *ROOT.glob("docs/*.md"),
    ]
)
CITED_PATH = re.compile(r"(?<![\w/.-])((?:docs|scripts|configs|tests|reid)/[\w./-]*\w\.(?:md|py|yaml|png))")


def imported_modules(path: Path) -> list[str]:
    """Every module named by an import statement in `path` (`from a.b import c` names `a.b`)."""
    modules = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            modules.append(node.module)
    return modules


def private_parts(module: str) -> list[str]:
    """The parts of a dotted module name that a library marks private (a leading underscore)."""
    return [part for part in module.split(".") if part.startswith("_") and not part.startswith("__")]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_private_modules_of_other_libraries(path):
    private = [m for m in imported_modules(path) if not m.startswith("reid") and private_parts(m)]
    assert not private, f"{path.relative_to(ROOT)} imports private modules {private}"


def test_the_private_module_rule_catches_what_it_must():
    assert private_parts("hydra._internal.core_plugins.basic_sweeper") == ["_internal"]
    assert private_parts("torch.utils.data") == [] and private_parts("__future__") == []


@pytest.mark.parametrize("path", CITING, ids=lambda p: str(p.relative_to(ROOT)))
def test_cited_files_exist(path):
    """A comment, docstring or doc that names a file of the repository names one that is there."""
    cited = set(CITED_PATH.findall(path.read_text()))
    missing = sorted(c for c in cited if "*" not in c and not (ROOT / c).exists())
    assert not missing, f"{path.relative_to(ROOT)} cites {missing}, not in the repository"
