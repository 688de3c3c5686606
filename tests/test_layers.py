"""Layers point one way (cli -> train/bench/export/scale -> runtime/metrics/cams/models/data -> ops/errors), and the
deployable runtime imports no torch at module level: read from the source with ``ast`` (every import statement,
also the ones inside functions), so a violation anywhere fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "fcam_deploy"

#: top-level area -> its layer (higher imports lower, never the reverse; same layer only where listed below)
LAYER = {
    "cli": 4,
    "__main__": 4,
    "train": 3,
    "bench": 3,
    "export": 3,
    "scale": 3,
    "runtime": 2,
    "metrics": 2,
    "cams": 2,
    "models": 2,
    "data": 2,
    "ops": 1,
    "errors": 0,
    "_lazy": 0,
    "_io": 0,
    "_limits": 0,
    "_extras": 0,
    "_native_cpu": 0,
    "__init__": 0,
}
#: the runtime must not depend on the rest of its own layer either, except these (its torch backend needs models
#: and cams; data's torch-free image loader)
RUNTIME_MAY_IMPORT = {
    "runtime",
    "ops",
    "errors",
    "_lazy",
    "_io",
    "_limits",
    "_extras",
    "_native_cpu",
    "models",
    "cams",
    "data",
    "__init__",
}
#: allowed imports between the build-time areas of layer 3 (the demo ends with a benchmark; benchmarks and the
#: scale-out tools use exported graphs); export itself depends on none of them
SAME_LAYER_OK = {("train", "bench"), ("train", "export"), ("bench", "export"), ("scale", "export")}
#: runtime modules that may import torch at module level (the torch backend and its graph, imported only for
#: backend="torch"); elsewhere in the runtime torch is imported inside the functions that receive torch objects
RUNTIME_TORCH_MODULES = {"torch_runner.py", "torch_graph.py"}


def _area(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "fcam_deploy":
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path) -> list[tuple[int, str, bool, bool]]:
    """(line, imported fcam_deploy module or top-level name, at module level?, only under ``if TYPE_CHECKING:``?)
    of every import in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    type_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and _is_type_checking(node.test)
        for stmt in node.body
        for inner in ast.walk(stmt)
    }
    rel = path.relative_to(PKG.parent).with_suffix("")
    pkg_parts = list(rel.parts[:-1])  # the package a relative import starts from (for a module and an __init__)
    out = []
    top_level = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                out.append((node.lineno, a.name, id(node) in top_level, id(node) in type_only))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg_parts[: len(pkg_parts) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names = [mod] if node.module else [f"{mod}.{a.name}" for a in node.names]
            if node.module and mod.startswith("fcam_deploy"):
                names += [f"{mod}.{a.name}" for a in node.names]
            for name in names:
                out.append((node.lineno, name, id(node) in top_level, id(node) in type_only))
    return out


def _py_files() -> list[Path]:
    return sorted(p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts)


def test_layers_point_one_way() -> None:
    problems = []
    for path in _py_files():
        src_area = _area(".".join(path.relative_to(PKG.parent).with_suffix("").parts))
        assert src_area is not None
        src_area = src_area if src_area in LAYER else "__init__"
        for line, mod, _, type_only in _imports(path):
            dst = _area(mod)
            if dst is None or dst == src_area or dst not in LAYER:
                continue
            if path == PKG / "__init__.py" and type_only and mod == f"fcam_deploy.{dst}":
                continue  # the package root names its subpackages for type checkers (imported lazily on access)
            if dst in ("cli", "__main__") and src_area not in ("cli", "__main__"):
                problems.append(f"{path.relative_to(PKG.parent)}:{line} imports {mod} (nothing imports the CLI)")
            elif LAYER[dst] > LAYER[src_area] or (
                LAYER[dst] == LAYER[src_area] == 3 and (src_area, dst) not in SAME_LAYER_OK
            ):
                problems.append(f"{path.relative_to(PKG.parent)}:{line} imports {mod} ({src_area} -> {dst} points up)")
            elif src_area == "runtime" and dst not in RUNTIME_MAY_IMPORT:
                problems.append(f"{path.relative_to(PKG.parent)}:{line}: the runtime imports {mod}")
    assert not problems, "\n".join(problems)


def test_runtime_modules_do_not_import_the_training_stack_at_module_level() -> None:
    problems = []
    for path in sorted((PKG / "runtime").glob("*.py")):
        for line, mod, top, _ in _imports(path):
            heavy = mod.split(".")[0] in ("torch", "torchvision", "cv2", "scipy", "matplotlib", "onnx")
            if heavy and top and path.name not in RUNTIME_TORCH_MODULES:
                problems.append(f"runtime/{path.name}:{line} imports {mod}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "bad",
    [
        "from fcam_deploy.export.graph import X",
        "import fcam_deploy.train.engine",
        # a type-only import still points up (only the package root may name its subpackages that way)
        "from typing import TYPE_CHECKING\n    if TYPE_CHECKING:\n        from fcam_deploy.export import graph",
    ],
)
def test_the_checker_sees_a_violation(tmp_path: Path, bad: str) -> None:
    """The walker is not vacuous: a runtime module importing export/train is reported."""
    fake = PKG / "runtime" / "_layer_probe_tmp.py"
    fake.write_text(f"def f():\n    {bad}\n", encoding="utf-8")
    try:
        with pytest.raises(AssertionError, match="_layer_probe_tmp"):
            test_layers_point_one_way()
    finally:
        fake.unlink()
