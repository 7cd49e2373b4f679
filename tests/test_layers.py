"""Imports run down the layers: cli → report / evaluation → methods → head / solvers / engine → models.

Every import statement in the package (module level or inside a function) is read with ``ast``; a
module may import its own layer or a lower one, never a higher one, and report never imports
evaluation (the suites may draw reports; the report draws what any caller hands it). Modules outside these layers (errors, _params, classes, debugging, …) are free.
"""

import ast
from pathlib import Path

import representer

PACKAGE = Path(representer.__file__).resolve().parent
LAYERS = {
    "models": 0,
    "head": 1, "solvers": 1, "engine": 1, "fullmodel": 1,
    "methods": 2,
    "report": 3, "evaluation": 3,
    "cli": 4,
}


def _layer_of(module: str) -> str | None:
    """The layer of ``representer.a.b`` (its first part), or None outside the layers."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "representer" and parts[1] in LAYERS else None


def _imports(source: str, module: str, is_package: bool = False) -> list[str]:
    """Every module (and module attribute) that ``source``, the code of ``module``, imports."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                target = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            else:
                target = node.module
            found += [target] + [f"{target}.{a.name}" for a in node.names]
    return found


def _wrong_imports() -> list[str]:
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(("representer", *path.relative_to(PACKAGE).with_suffix("").parts))
        module = module.removesuffix(".__init__")
        own = _layer_of(module)
        if own is None:
            continue
        for target in _imports(path.read_text(), module, path.name == "__init__.py"):
            other = _layer_of(target)
            if other is not None and other != own and (LAYERS[other] > LAYERS[own] or (own, other) == ("report", "evaluation")):
                wrong.append(f"{module} imports {target}")
    return wrong


def test_imports_run_down_the_layers():
    assert _wrong_imports() == []


def test_relative_and_function_level_imports_are_seen():
    source = "import numpy\nfrom .kernels import BilinearKernel\n\ndef fit():\n    from ..methods.rps_l2 import RPSL2\n"
    found = _imports(source, "representer.engine.distributed")
    assert {"numpy", "representer.engine.kernels", "representer.methods.rps_l2.RPSL2"} <= set(found)
    assert _layer_of("representer.methods.rps_l2") == "methods" and _layer_of("representer.errors") is None
    assert _imports("from . import scoring\n", "representer.engine", is_package=True) == ["representer.engine", "representer.engine.scoring"]
