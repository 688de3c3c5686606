"""Importing the CAM package does no work and pulls in no optional dependency."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_import_is_lazy_about_optional_dependencies() -> None:
    code = (
        "import sys, fcam_deploy.cams as c; c.compute_maps; "
        "bad = [m for m in ('cv2', 'onnxruntime', 'matplotlib', 'pytorch_grad_cam', 'safetensors', 'onnx') "
        "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], check=False, cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_cams_modules_import_each_other_without_a_cycle() -> None:
    """Every import between ``fcam_deploy.cams`` modules (module level or inside functions) points one way."""
    import ast

    pkg = REPO / "fcam_deploy" / "cams"
    graph: dict[str, set[str]] = {}
    for path in pkg.glob("*.py"):
        name = path.stem
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fcam_deploy.cams."):
                deps.add(node.module.split(".")[2])
            elif isinstance(node, ast.ImportFrom) and node.module == "fcam_deploy.cams":
                deps.update(a.name for a in node.names if (pkg / f"{a.name}.py").exists())
        graph[name] = deps - {name}
    assert graph["_core"] == set() and graph["prototypes"] == {"_core"}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        if state.get(node) == 1:
            raise AssertionError(f"import cycle: {' -> '.join([*path, node])}")
        if state.get(node) == 2:
            return
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            visit(dep, [*path, node])
        state[node] = 2

    for mod in sorted(graph):
        visit(mod, [])
