"""The layers point one way (README "Architecture"): walk every module's imports with `ast` and fail on
an import that goes the wrong way or closes a cycle."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[1]


def _package_dirs() -> dict[str, Path]:
    data = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    return {pkg: REPO / d for pkg, d in data["tool"]["setuptools"]["package-dir"].items()}


def _modules() -> dict[str, Path]:
    """Module name -> file, for every module of the installed package layout."""
    found: dict[str, Path] = {}
    for pkg, folder in _package_dirs().items():
        for f in folder.glob("*.py"):
            found[pkg if f.stem == "__init__" else f"{pkg}.{f.stem}"] = f
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Our modules that `name` imports anywhere in its body (function-level imports count too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_pkg = path.stem == "__init__"
    out: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            targets = [prefix] + [f"{prefix}.{a.name}" for a in node.names]
        for t in targets:
            if t in known:
                out.add(t)
            elif t.startswith("medmill.") and t.rsplit(".", 1)[0] in known:
                out.add(t.rsplit(".", 1)[0])
    out.discard(name)
    return out


@cache  # every test reads the same graph: parse the package once
def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: _imports(name, path, set(mods)) for name, path in mods.items()}


EVAL_MAY_USE = (
    "medmill.builders.core.progress",
    "medmill.builders.llm",
    "medmill.builders.text",
    "medmill.builders.curation.decontam",
    "medmill.builders.publish.report",
)


def _violations(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for mod, deps in sorted(graph.items()):
        for dep in sorted(deps):
            if mod.startswith("medmill.builders") and dep.startswith(("medmill.commands", "medmill.console", "medmill.cli")):
                bad.append(f"{mod} imports {dep}: builders must not import the CLI")
            if mod == "medmill.builders.core.writer" and dep.startswith("medmill.builders.publish"):
                bad.append(f"{mod} imports {dep}: the writer takes a card hook instead")
            if mod.startswith("medmill.schemas") and not dep.startswith("medmill.schemas"):
                bad.append(f"{mod} imports {dep}: schemas import nothing of ours")
            if mod.startswith("medmill.trainers") and dep.startswith("medmill.builders"):
                bad.append(f"{mod} imports {dep}: trainers read dataset dirs, never builders")
            if mod.startswith(("medmill.builders", "medmill.trainers", "medmill.schemas")) and dep.startswith("medmill.evaluation"):
                bad.append(f"{mod} imports {dep}: evaluation sits on top; nothing below imports it")
            if mod.startswith("medmill.evaluation") and dep.startswith(("medmill.commands", "medmill.console", "medmill.cli")):
                bad.append(f"{mod} imports {dep}: evaluation must not import the CLI")
            if mod.startswith("medmill.evaluation") and dep.startswith("medmill.builders") and not dep.startswith(EVAL_MAY_USE):
                bad.append(f"{mod} imports {dep}: evaluation uses only the LLM engine, text measures, decontamination and the report page of builders")
            if mod.startswith("medmill.commands.") and dep.startswith("medmill.commands.") and not dep.split(".")[-1].startswith("_"):
                bad.append(f"{mod} imports {dep}: a command module imports no other command")
    return bad


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_walk_sees_the_whole_package():
    graph = _graph()
    assert {"medmill.cli", "medmill.builders.core.writer", "medmill.schemas.records", "medmill.trainers.ppo"} <= set(graph)
    assert "medmill.builders.core.manifest" in graph["medmill.builders.core.writer"]
    assert "medmill.schemas.records" in graph["medmill.schemas"]  # relative imports resolve


def test_imports_point_one_way():
    assert _violations(_graph()) == []


def test_no_import_cycles():
    assert _cycles(_graph()) == []


def test_the_checks_catch_wrong_imports():
    """The rules fire on a graph that breaks them (so a passing run means something)."""
    graph = {
        "medmill.builders.core.writer": {"medmill.builders.publish.card"},
        "medmill.builders.kg_qa.build": {"medmill.console"},
        "medmill.schemas.records": {"medmill.builders.text.cjk"},
        "medmill.trainers.data": {"medmill.builders.core.splits"},
        "medmill.commands.dedup": {"medmill.commands.filter_cmd"},
        "medmill.trainers.options": {"medmill.trainers.ppo"},
        "medmill.trainers.ppo": {"medmill.trainers.options"},
    }
    assert len(_violations(graph)) == 5
    assert _cycles(graph) == [["medmill.trainers.options", "medmill.trainers.ppo"]]
