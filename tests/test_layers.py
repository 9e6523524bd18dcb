"""The package's imports point one way: no circle, no layer importing a layer above it.

Read from the source with ``ast`` (nothing is imported), every import counts: at the top
of a module, inside a function, or under ``TYPE_CHECKING``. The layers, lowest first, are
the table in docs/architecture.md; a new module must be placed in one of them.

The benchmarks (``benchmarks/src/sauron_bench``) stand beside the product: the product
names nothing of them, they take no private name of the product, and inside them the
same rule holds, lowest first (``BENCH_ORDER``).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "sauron"
BENCH = ROOT / "benchmarks" / "src" / "sauron_bench"

#: Lowest first. A room is a top-level module or a sub-package of ``sauron``; a room may
#: import its own layer's rooms (without a circle among rooms) and the layers below it.
LAYERS: dict[str, set[str]] = {
    "base": {
        "sauron",
        "types",
        "codec",
        "config",
        "imaging",
        "logs",
        "cache",
        "metrics",
        "queues",
    },
    "stages": {"bus", "ingest", "detect", "match", "store", "record"},
    "serve": {"serve", "status"},
    "pipeline": {"pipeline"},
    "tools": {"demo"},
    "cli": {"cli"},
}

#: Inside the stage layer, lowest first: a stage imports only the stages before it.
STAGE_ORDER = ["bus", "ingest", "detect", "match", "store", "record"]

#: Inside the benchmarks, lowest first: a module imports its own group and the groups
#: before it.
BENCH_ORDER: list[set[str]] = [
    {
        "workload",
        "realistic",
        "measure",
        "probes",
        "broker",
    },  # what is fed, what is measured, the broker
    {"product_pipelines", "bare_loop", "seed_pipeline"},  # the systems under test
    {"runner", "pipeline_runs"},  # one measured run; the runs of `sauron bench pipeline`
    {"report"},  # the JSON document, the table, the figure
    # the commands
    {
        "pipeline_command",
        "detectors",
        "embedder",
        "frame_cost",
        "scale",
        "search",
        "security",
        "soak",
        "supervision",
        "startup",
        "storage",
        "threads",
        "visitors",
    },
    {"commands"},  # `sauron bench`: which command runs which
]


@dataclass(frozen=True)
class Import:
    source: str  # importing module, dotted
    target: str  # imported module, dotted
    names: tuple[str, ...]  # the names taken from it (``from x import a, b``)
    line: int


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def read_imports(root: Path, beside: Iterable[str] = ()) -> tuple[set[str], list[Import]]:
    """Every module below ``root`` and every import of one of them, or of one of the
    modules ``beside`` (another package's), by a module below ``root``."""
    paths = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    modules = set(paths) | set(beside)
    found: list[Import] = []
    for source, path in paths.items():
        package = source if path.name == "__init__.py" else source.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in modules:
                        found.append(Import(source, alias.name, (), node.lineno))
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                if base not in modules:
                    continue
                plain: list[str] = []
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    if sub in modules:  # ``from sauron import codec``: the module itself
                        found.append(Import(source, sub, (), node.lineno))
                    else:
                        plain.append(alias.name)
                if plain:
                    found.append(Import(source, base, tuple(plain), node.lineno))
    return set(paths), [i for i in found if i.source != i.target]


def names_of(root: Path, package: str) -> list[str]:
    """Every place below ``root`` that names ``package`` or one of its modules: an import,
    or a string that could load it (``importlib.import_module``, an entry point)."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names = [node.value]
            else:
                continue
            found += [
                f"{module_name(path, root)} (line {node.lineno}) names {name!r}, of the "
                f"benchmarks: the product must not depend on them"
                for name in names
                if name == package or name.startswith((f"{package}.", f"{package}:"))
            ]
    return found


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def layer_of(module: str) -> int:
    for rank, rooms in enumerate(LAYERS.values()):
        if room(module) in rooms:
            return rank
    raise AssertionError(f"{module} is in no layer: add its room to LAYERS (and the docs)")


def cycles(edges: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def loop_through(first: str, edges: Mapping[str, Iterable[str]], within: set[str]) -> list[str]:
    """A shortest path from ``first`` back to itself inside ``within`` (breadth first)."""
    came: dict[str, str] = {}
    todo = [first]
    while todo:
        node = todo.pop(0)
        for nxt in sorted(edges.get(node, ())):
            if nxt == first:
                path = [node]
                while path[-1] != first:
                    path.append(came[path[-1]])
                return [*reversed(path), first]
            if nxt in within and nxt not in came:
                came[nxt] = node
                todo.append(nxt)
    return [first]


def circles(what: str, edges: Mapping[str, Iterable[str]]) -> list[str]:
    return [
        f"import circle among {what}: {' -> '.join(loop_through(c[0], edges, set(c)))}"
        f" ({len(c)} {what} tied in all: {', '.join(c)})"
        for c in cycles(edges)
    ]


def graph(pairs: Iterable[tuple[str, str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for a, b in pairs:
        if a != b:
            out.setdefault(a, set()).add(b)
    return out


def violations(root: Path) -> list[str]:
    """Every broken rule, one line each (empty: the imports point one way)."""
    modules, imports = read_imports(root)
    problems = [f"{m}: {exc}" for m in sorted(modules) for exc in _placed(m)]
    problems += circles("modules", graph((i.source, i.target) for i in imports))
    problems += circles("rooms", graph((room(i.source), room(i.target)) for i in imports))
    for i in imports:
        src, dst = _safe_layer(i.source), _safe_layer(i.target)
        if src is not None and dst is not None and dst > src:
            problems.append(f"{i.source} (line {i.line}) imports {i.target}, a layer above it")
        a, b = room(i.source), room(i.target)
        if a in STAGE_ORDER and b in STAGE_ORDER and STAGE_ORDER.index(b) > STAGE_ORDER.index(a):
            problems.append(f"{i.source} (line {i.line}) imports {i.target}, a later stage")
        problems.extend(_private(i))
    return problems + names_of(root, "sauron_bench")


def bench_violations(root: Path, product: Path) -> list[str]:
    """Every broken rule of the benchmarks' package at ``root`` beside ``product``."""
    modules, imports = read_imports(root, beside=read_imports(product)[0])
    problems = [
        f"{m}: a bench module in no group: add it to BENCH_ORDER"
        for m in sorted(modules)
        if m.count(".") == 1 and _bench_rank(m) is None
    ]
    ours = [i for i in imports if i.target in modules]
    problems += circles("modules", graph((i.source, i.target) for i in ours))
    for i in imports:
        problems.extend(_private(i))
        if i.target in modules:
            problems.extend(_bench_rule(i))
    return problems


def _private(i: Import) -> list[str]:
    private = [n for n in i.names if n.startswith("_") and not n.startswith("__")]
    if private:
        return [f"{i.source} (line {i.line}) imports private {', '.join(private)} from {i.target}"]
    return []


def _placed(module: str) -> list[str]:
    try:
        layer_of(module)
    except AssertionError as exc:
        return [str(exc)]
    return []


def _safe_layer(module: str) -> int | None:
    try:
        return layer_of(module)
    except AssertionError:
        return None


def _bench_rank(module: str) -> int | None:
    name = module.rpartition(".")[2]
    for rank, names in enumerate(BENCH_ORDER):
        if name in names:
            return rank
    return None


def _bench_rule(i: Import) -> list[str]:
    src, dst = _bench_rank(i.source), _bench_rank(i.target)
    if src is not None and dst is not None and dst > src:
        return [f"{i.source} (line {i.line}) imports {i.target}: the bench points the other way"]
    return []


def test_the_package_imports_point_one_way() -> None:
    assert violations(SRC) == []


def documented_layers(text: str) -> list[set[str]]:
    """The rooms of each row of the layer table in docs/architecture.md, lowest first: the
    ``x.py`` modules and ``x/`` folders it names."""
    rows = [ln for ln in text.splitlines() if re.match(r"\| \d ", ln)]
    rooms = [re.findall(r"`(\w+)(?:\.py|/)`", row.split("|")[2]) for row in rows]
    return [set(r) for r in reversed(rooms)]


def test_the_documented_layers_are_the_checked_ones() -> None:
    documented = documented_layers((ROOT / "docs" / "architecture.md").read_text())
    assert documented == [rooms - {"sauron"} for rooms in LAYERS.values()]


def test_the_benchmarks_import_point_one_way() -> None:
    assert bench_violations(BENCH, SRC) == []


def write(root: Path, files: dict[str, str], package: str = "sauron") -> Path:
    pkg = root / package
    for rel, text in files.items():
        path = pkg / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return pkg


CLEAN = {
    "__init__.py": "",
    "types.py": "",
    "store/__init__.py": "",
    "store/recorder.py": "from sauron import types\n",
    "serve/__init__.py": "",
    "serve/alerts.py": "from sauron.store.recorder import x\n",
    "cli.py": "def main():\n    from sauron.serve import alerts\n",
}


def test_a_clean_tree_passes(tmp_path: Path) -> None:
    assert violations(write(tmp_path, CLEAN)) == []


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        # the store reaching up into serve, even from inside a function
        (
            {"store/recorder.py": "def f():\n    from sauron.serve.alerts import A\n"},
            "sauron.store.recorder (line 2) imports sauron.serve.alerts, a layer above it",
        ),
        # two modules of one layer importing each other
        (
            {"types.py": "from sauron import codec\n", "codec.py": "from . import types\n"},
            "import circle among modules: sauron.codec -> sauron.types -> sauron.codec",
        ),
        # two rooms of one layer tied both ways through different modules
        (
            {
                "bus/__init__.py": "",
                "bus/embedded.py": "from sauron.detect.stage import S\n",
                "detect/__init__.py": "",
                "detect/stage.py": "",
                "detect/kafka_worker.py": "from sauron.bus import embedded\n",
            },
            "import circle among rooms: bus -> detect -> bus",
        ),
        # a stage importing a later one
        (
            {"detect/__init__.py": "", "detect/stage.py": "from sauron.store import db\n"},
            "sauron.detect.stage (line 1) imports sauron.store, a later stage",
        ),
        ({"gadget.py": ""}, "sauron.gadget: sauron.gadget is in no layer"),
        (
            {"store/db.py": "from sauron.store.recorder import _helper\n"},
            "sauron.store.db (line 1) imports private _helper from sauron.store.recorder",
        ),
        # the product reaching for the benchmarks, by an import or by name
        (
            {"cli.py": "def main():\n    from sauron_bench.commands import main\n"},
            "sauron.cli (line 2) names 'sauron_bench.commands', of the benchmarks",
        ),
        (
            {"cli.py": "import importlib\nB = importlib.import_module('sauron_bench')\n"},
            "sauron.cli (line 2) names 'sauron_bench', of the benchmarks",
        ),
    ],
)
def test_each_broken_rule_is_reported(tmp_path: Path, extra: dict[str, str], expected: str) -> None:
    problems = violations(write(tmp_path, {**CLEAN, **extra}))
    assert any(p.startswith(expected) for p in problems), problems


BENCH_CLEAN = {
    "__init__.py": "",
    "workload.py": "from sauron.types import Frame\n",
    "report.py": "from sauron_bench.workload import Workload\n",
}


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            {"workload.py": "from sauron_bench.report import table\n"},
            "sauron_bench.workload (line 1) imports sauron_bench.report: the bench points "
            "the other way",
        ),
        (
            {"measure.py": "from sauron.store.recorder import _helper\n"},
            "sauron_bench.measure (line 1) imports private _helper from sauron.store.recorder",
        ),
        ({"gadget.py": ""}, "sauron_bench.gadget: a bench module in no group"),
    ],
)
def test_each_broken_bench_rule_is_reported(
    tmp_path: Path, extra: dict[str, str], expected: str
) -> None:
    product = write(tmp_path, CLEAN)
    bench = write(tmp_path, {**BENCH_CLEAN, **extra}, package="sauron_bench")
    problems = bench_violations(bench, product)
    assert any(p.startswith(expected) for p in problems), problems


def test_a_clean_bench_passes(tmp_path: Path) -> None:
    product = write(tmp_path, CLEAN)
    assert bench_violations(write(tmp_path, BENCH_CLEAN, package="sauron_bench"), product) == []
