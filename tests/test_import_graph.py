"""The import graph of `src/condiff` has no cycle, and `condiff --help` loads neither torch nor numpy.

The graph (issue 39): one node per module, a package's `__init__.py` being the module `condiff.x`; one edge
for every import of a condiff module anywhere in a file, at the top, inside a function or class, and under
`if TYPE_CHECKING:` too (an annotation that names a class of a higher layer is still a dependency on it;
none is needed to break a cycle). An import resolves to the module it names: `import condiff.a.b` and
`from condiff.a import b` (where condiff/a/b.py or condiff/a/b/ exists) are edges to `condiff.a.b`,
`from condiff.a import name` to `condiff.a`; relative imports resolve the same way from the importing
module's package. An edge to `condiff.a.b` is not also an edge to the package `condiff.a`, although Python
runs `condiff/a/__init__.py` first: a package whose `__init__` imports its own submodules would otherwise
be a cycle with each of them, and what such a package re-exports is the package's dependency, not its
submodules'. An import of the module itself is no edge.

`python tests/test_import_graph.py` prints every cycle left (each strongly connected component, with the
import lines that close one loop through it).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

SOURCE = Path(__file__).parents[1] / "src"
PACKAGE = SOURCE / "condiff"
HEAVY = ("torch", "numpy")  # what `condiff --help` must not load (issue 42)


# --- the graph -------------------------------------------------------------------------------------


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SOURCE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The condiff module an imported dotted name stands for: the longest known prefix."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in known:
            return candidate
    return None


def imports_of(module: str, path: Path, known: dict[str, Path]) -> list[tuple[str, int]]:
    """(condiff module imported, line) for every import statement in the file, wherever it stands."""
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the importing module's package, one level up per extra dot
                package = module.split(".") if is_package else module.split(".")[:-1]
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for name in names:
            if name == "condiff" or name.startswith("condiff."):
                target = _resolve(name, known)
                if target is not None and target != module:
                    found.append((target, node.lineno))
    return found


def import_graph() -> dict[str, dict[str, list[int]]]:
    """{module: {imported module: [lines]}} for every module of src/condiff."""
    known = modules()
    graph: dict[str, dict[str, list[int]]] = {}
    for module, path in known.items():
        edges: dict[str, list[int]] = defaultdict(list)
        for target, line in imports_of(module, path, known):
            edges[target].append(line)
        graph[module] = dict(edges)
    return graph


def cycles(graph: dict[str, dict[str, list[int]]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted, largest first."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found, key=lambda c: (-len(c), c))


def loop_through(component: list[str], graph: dict[str, dict[str, list[int]]]) -> list[str]:
    """One shortest loop from the component's first module back to it: [a, b, ..., a]."""
    start, members = component[0], set(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for target in sorted(graph[node]):
            if target == start:
                return paths[node] + [start]
            if target in members and target not in paths:
                paths[target] = paths[node] + [target]
                queue.append(target)
    raise AssertionError(f"no loop through {component}")


def describe(component: list[str], graph: dict[str, dict[str, list[int]]]) -> str:
    loop = loop_through(component, graph)
    steps = [f"  {a} -> {b}  ({modules()[a].relative_to(SOURCE.parent)}:{','.join(map(str, sorted(set(graph[a][b]))))})"
             for a, b in zip(loop, loop[1:], strict=False)]
    return f"{len(component)} modules: {', '.join(component)}\n  one loop:\n" + "\n".join(steps)


def test_the_graph_sees_every_kind_of_import(tmp_path):
    """The parser finds imports inside functions and under TYPE_CHECKING, and resolves submodules, names
    and relative imports as the docstring says."""
    text = ("from typing import TYPE_CHECKING\nimport condiff.errors\nfrom condiff.conditions import registry\n"
            "from condiff.config import Recipe\nfrom . import base\nfrom ..images import luma\n"
            "if TYPE_CHECKING:\n    from condiff.model import build_unet\n"
            "def f():\n    from condiff.conditions.stack import ConditionStack\n")
    path = tmp_path / "probe.py"
    path.write_text(text)
    found = {target for target, _ in imports_of("condiff.conditions.probe", path, modules())}
    assert found == {"condiff.errors", "condiff.conditions.registry", "condiff.config", "condiff.conditions.base",
                     "condiff.images", "condiff.model", "condiff.conditions.stack"}


def test_no_import_cycles():
    graph = import_graph()
    found = cycles(graph)
    assert not found, "import cycles among src/condiff modules:\n" + "\n".join(describe(c, graph) for c in found)


# --- `condiff --help` stays light ------------------------------------------------------------------


def help_commands() -> list[list[str]]:
    """[["--help"], ["train", "--help"], ..., ["conditions", "list", "--help"], ...]: the top level and every
    subcommand (nested ones too) that cli/main.py's parser has."""
    import argparse

    from condiff.cli.main import build_parser

    def walk(parser: argparse.ArgumentParser, prefix: list[str]) -> list[list[str]]:
        commands = [[*prefix, "--help"]]
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    commands += walk(sub, [*prefix, name])
        return commands

    return walk(build_parser(), [])


PROBE = """
import json, sys
from condiff.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(name for name in sys.modules if name.split(".")[0] in {heavy})))
"""


def heavy_modules_loaded(argv: list[str]) -> list[str]:
    """The top-level heavy packages that `condiff ARGV` loads in a fresh interpreter."""
    done = subprocess.run([sys.executable, "-c", PROBE.format(heavy=set(HEAVY)), *argv],
                          capture_output=True, text=True, timeout=120, check=True)
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    return sorted({name.split(".")[0] for name in loaded})


def test_help_loads_neither_torch_nor_numpy():
    heavy = {" ".join(argv): loaded for argv in help_commands() if (loaded := heavy_modules_loaded(argv))}
    assert not heavy, f"condiff ... --help loads {heavy}; import them inside the functions that need them"



def test_subpackages_are_reached_from_import_condiff_alone():
    code = ("import sys, condiff; loaded = 'torch' in sys.modules; "
            "print(loaded, condiff.tasks.COLORIZE.name, condiff.steering.__name__, hasattr(condiff, 'no_such'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.split() == ["False", "colorize", "condiff.steering", "False"]


if __name__ == "__main__":
    graph = import_graph()
    found = cycles(graph)
    print(f"{len(graph)} modules, {sum(map(len, graph.values()))} edges, {len(found)} cycle(s)")
    for component in found:
        print(describe(component, graph))
