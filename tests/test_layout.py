"""The house rules of host/ (issue 12), read from the source: commands on top, no cycles, evaluate
not standing on replay. A rule broken by a new import fails here, naming the import."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports():
    """{module: {imported host module, ...}} over host/, the simulator's shim (MicroPython code) aside."""
    modules = {module_name(p): p for p in (ROOT / "host").rglob("*.py") if "shim" not in p.parts}
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                subs = [f"{node.module}.{a.name}" for a in node.names]
                targets = [t for t in subs if t in modules] or [node.module]  # `from pkg import mod`: mod
            else:
                continue
            found.update(t for t in targets if t in modules)
        graph[name] = {t for t in found if t != name and not name.startswith(t + ".")}  # parents load first anyway
    return graph


def reachable(graph, start):
    seen, todo = set(), [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_only_the_cli_and_the_commands_import_the_commands():
    graph = imports()
    offenders = [(m, t) for m, targets in graph.items() for t in targets
                 if t.startswith("host.commands") and not (m.startswith("host.commands") or m == "host.cli")]
    assert not offenders, f"logic importing a command module: {offenders}"


def test_no_import_cycles():
    graph = imports()
    cycles = sorted(m for m in graph if m in reachable(graph, m))
    assert not cycles, f"modules importing themselves through others: {cycles}"


def test_evaluate_does_not_stand_on_replay_or_collect_commands():
    below = reachable(imports(), "host.evaluate")
    assert "host.replay" not in below and "host.predict" not in below, sorted(below)
    assert "host.sessions.stats" in below  # where the figures it needs live
