"""The project's layering, read from the imports of every module (docs/architecture.md, "Layers and rules").

- ``models`` and ``data_pipeline`` import nothing else of the project: they meet only in ``unity``;
- ``unity`` imports neither ``eval`` nor ``benchmarks``; ``eval`` does not import ``benchmarks``;
- inside ``unity`` the layers point one way: ``config`` <- ``method`` <- ``train`` <- ``inference``
  (the command-line modules at ``unity/``'s top may use any of them);
- ``unity_cli`` (the installed commands) sits above all of them: nothing but ``train.py`` imports it;
- no module imports one that imports it back, directly or through others, function-level imports included.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("unity", "models", "data_pipeline", "eval", "benchmarks", "unity_cli")
UNITY_LAYERS = ("unity.config", "unity.method", "unity.train", "unity.inference")  # lowest first


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    modules = {module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}
    modules["train"] = ROOT / "train.py"
    return modules


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``name`` imports anywhere in its file (a package import counts as its ``__init__``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


GRAPH = {name: imports(name, path, set(project_modules())) for name, path in project_modules().items()}


def top(name: str) -> str:
    return name.split(".")[0]


def layer(name: str) -> int | None:
    for index, prefix in enumerate(UNITY_LAYERS):
        if name == prefix or name.startswith(prefix + "."):
            return index
    return None


def test_the_graph_sees_the_project():
    assert (
        len(GRAPH) > 100 and "unity.train.trainer" in GRAPH and "unity.method.network" in GRAPH["unity.train.trainer"]
    )


def test_models_and_data_pipeline_import_nothing_else_of_the_project():
    wrong = {
        (a, b) for a, deps in GRAPH.items() for b in deps if top(a) in ("models", "data_pipeline") and top(b) != top(a)
    }
    assert not wrong, sorted(wrong)


def test_unity_imports_neither_eval_nor_benchmarks_and_eval_not_benchmarks():
    wrong = {
        (a, b)
        for a, deps in GRAPH.items()
        for b in deps
        if (top(a) == "unity" and top(b) in ("eval", "benchmarks", "train"))
        or (top(a) == "eval" and top(b) in ("benchmarks", "train"))
    }
    assert not wrong, sorted(wrong)


def test_only_train_py_imports_the_command_line_package():
    wrong = {
        (a, b)
        for a, deps in GRAPH.items()
        for b in deps
        if top(b) == "unity_cli" and top(a) not in ("unity_cli", "train")
    }
    assert not wrong, sorted(wrong)
    assert "unity_cli.train" in GRAPH["train"] and "eval.run_report" in GRAPH["unity_cli.train"]


def test_the_layers_of_unity_point_one_way():
    wrong = {
        (a, b)
        for a, deps in GRAPH.items()
        for b in deps
        if layer(a) is not None and layer(b) is not None and layer(b) > layer(a)
    }
    assert not wrong, sorted(wrong)


def test_no_import_cycles():
    """Tarjan's strongly connected components: any component of more than one module is a cycle."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in GRAPH:
        if v not in index:
            visit(v)
    assert not cycles, cycles


def test_nothing_cites_a_document_outside_the_repository():
    cited = [str(p.relative_to(ROOT)) for name, p in project_modules().items() if "DESIGN" in p.read_text()]
    assert not cited, cited
