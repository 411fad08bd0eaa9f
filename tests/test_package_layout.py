"""The installed shape: one import package, no generic top-level names, layers that import downwards only."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUBPACKAGES = ("api", "data", "evaluation", "model", "policy", "training")
GENERIC = ("api", "model", "data", "training", "evaluation", "tests", "policy")


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_no_generic_top_level_package_is_importable_from_a_neutral_folder(tmp_path):
    code = ("import importlib.util, sys; sys.path = [p for p in sys.path if p not in ('', '.')]; "
            f"print([n for n in {GENERIC!r} if importlib.util.find_spec(n) is not None])")
    result = run_python(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_users_own_data_model_and_api_modules_break_nothing(tmp_path):
    for name in ("data", "model", "api"):
        (tmp_path / f"{name}.py").write_text(f"raise SystemExit('the user\\'s {name}.py was imported')\n", encoding="utf-8")
    code = ("from helpdesk_triage.model import TriageModel; from helpdesk_triage.policy.triage import triage; "
            "from helpdesk_triage.policy.labels import LABELS; import helpdesk_triage.api.app; print(LABELS.categories)")
    result = run_python(code, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "('A', 'B', 'C', 'D')" in result.stdout


def test_policy_and_the_model_folder_format_import_neither_fastapi_nor_torch(tmp_path):
    modules = [f"helpdesk_triage.policy.{p.stem}" for p in sorted((REPO / "policy").glob("*.py")) if p.stem != "__init__"]
    modules += ["helpdesk_triage.model", "helpdesk_triage.model.folder"]
    code = (f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
            "print(sorted(n for n in ('fastapi', 'starlette', 'torch', 'transformers', 'onnxruntime') if n in sys.modules))")
    result = run_python(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def _import_graph() -> dict[str, set[str]]:
    """Module → the package modules it imports (every import statement, function-level ones included)."""
    modules = {}
    for package in SUBPACKAGES:
        for path in (REPO / package).glob("*.py"):
            name = f"helpdesk_triage.{package}" + ("" if path.stem == "__init__" else f".{path.stem}")
            modules[name] = path
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                targets = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [node, nxt] if nxt in path else [node, nxt]
            if nxt not in state and (found := visit(nxt, path + [node])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [])):
            return found
    return None


def test_no_module_imports_itself_in_a_circle():
    assert _cycle(_import_graph()) is None


def test_layers_import_downwards_only():
    # policy is the bottom layer (nothing of ours), the model sits on it, the HTTP layer on top of all.
    below = {"policy": set(), "model": {"policy"}, "data": set()}
    for module, imported in _import_graph().items():
        package = module.split(".")[1]
        if package in below:
            packages = {m.split(".")[1] for m in imported} - {package}
            assert packages <= below[package], (module, packages)
        if package != "api":
            assert not any(m.startswith("helpdesk_triage.api") for m in imported), module
