"""The package's shape, read from the source with ast: sub-packages that import only from those below
them, no import cycle (imports inside functions counted), first-party imports inside functions only
where the target needs an optional dependency, modules and functions that fit on a screen, no sibling
names that collide, tests that mirror the packages and import every module."""

from __future__ import annotations

import ast
from itertools import combinations
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "unetkit"
TESTS = ROOT / "tests"

# Lowest first: a module may import from its own layer and the layers before it, never after.
LAYERS = [
    ("errors", "_version"),
    ("config", "runtime", "distributed", "plots"),
    ("model",),
    ("data",),
    ("metrics",),
    ("infer",),
    ("interactive",),
    ("training",),
    ("deploy",),
    ("serve",),
    ("commands", "cli", "api", "__init__", "__main__"),
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}
# First-party modules that need an optional dependency (fastapi), or pull torch.onnx (slow to import, so
# every command would start slower), and so are imported where used.
OPTIONAL = ("unetkit.serve", "unetkit.deploy.export", "unetkit.deploy.triton")
MAX_MODULE_LINES = 350
MAX_FUNCTION_LINES = 60


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def resolve(target: str, alias: str | None) -> str:
    """`from unetkit.x import y`: the module y when it is one, else unetkit.x."""
    if alias and f"{target}.{alias}" in MODULES:
        return f"{target}.{alias}"
    return target


def imports(path: Path) -> list[tuple[str, bool, int]]:
    """(first-party module imported, inside a function?, line) for every import in a file."""
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.ImportFrom) and child.module and child.module.split(".")[0] == "unetkit":
                for a in child.names:
                    found.append((resolve(child.module, a.name), in_function, child.lineno))
            elif isinstance(child, ast.Import):
                found.extend(
                    (a.name, in_function, child.lineno) for a in child.names if a.name.split(".")[0] == "unetkit"
                )
            visit(child, inner)

    visit(ast.parse(path.read_text()), False)
    return found


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYER["__init__" if len(parts) == 1 else parts[1]]


def test_every_module_has_a_layer():
    assert {m.split(".")[1] if "." in m else "__init__" for m in MODULES} <= LAYER.keys()
    assert len(MODULES) > 50 and {"unetkit.training.loop", "unetkit.deploy.engines", "unetkit.serve.app"} <= set(
        MODULES
    )


def test_imports_follow_the_package_order():
    against = [
        f"{src}:{line} imports {dst}"
        for src, path in MODULES.items()
        for dst, _, line in imports(path)
        if dst in MODULES and layer(dst) > layer(src)
    ]
    assert not against, "\n".join(against)


def test_first_party_imports_inside_functions_only_for_optional_dependencies():
    lazy = [
        f"{src}:{line} imports {dst} inside a function"
        for src, path in MODULES.items()
        for dst, inside, line in imports(path)
        if inside and not dst.startswith(OPTIONAL)
    ]
    assert not lazy, "\n".join(lazy)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules it imports (anywhere in it), with the packages Python runs on the way
    (the __init__ of each package above the target that is not also above the importer)."""
    graph: dict[str, set[str]] = {}
    for src, path in MODULES.items():
        targets = set()
        own = {".".join(src.split(".")[:i]) for i in range(1, src.count(".") + 1)}
        for dst, _, _ in imports(path):
            parts = dst.split(".")
            targets |= ({".".join(parts[:i]) for i in range(2, len(parts) + 1)} - own) & MODULES.keys()
        graph[src] = targets - {src}
    return graph


def test_no_import_cycle_lazy_imports_included():
    assert find_cycle(import_graph()) is None, " -> ".join(find_cycle(import_graph()))


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_modules_and_functions_fit_on_a_screen():
    long = []
    for name, path in MODULES.items():
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            long.append(f"{name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}: {n} lines")
    assert not long, "\n".join(long)


def collide(a: str, b: str) -> bool:
    """Names that differ by one letter (engine/engines) or where one extends the other (run/runtime)."""
    if a.startswith(b) or b.startswith(a):
        return True
    if len(a) != len(b):
        short, longer = sorted((a, b), key=len)
        return len(longer) - len(short) == 1 and any(longer[:i] + longer[i + 1 :] == short for i in range(len(longer)))
    return sum(x != y for x, y in zip(a, b, strict=True)) == 1


def test_collide():
    assert collide("engine", "engines") and collide("run", "runtime") and collide("serve", "serves")
    assert collide("plot", "plat") and not collide("loop", "losses") and not collide("data", "demo")


def test_no_two_sibling_modules_collide():
    by_package: dict[str, set[str]] = {}
    for path in SRC.rglob("*"):
        if (path.suffix == ".py" and path.stem != "__init__") or (path.is_dir() and (path / "__init__.py").is_file()):
            by_package.setdefault(str(path.parent), set()).add(path.stem if path.suffix else path.name)
    clashes = [
        f"{package}: {a} / {b}"
        for package, names in by_package.items()
        for a, b in combinations(sorted(names), 2)
        if collide(a.lstrip("_"), b.lstrip("_"))
    ]
    assert not clashes, "\n".join(clashes)


def test_tests_mirror_the_packages():
    packages = {p.name for p in SRC.iterdir() if (p / "__init__.py").is_file() and p.name != "commands"}
    assert packages <= {p.name for p in TESTS.iterdir() if p.is_dir()}, packages


def test_every_module_is_imported_by_a_test():
    """A package counts as imported with any of its modules (its __init__ runs first)."""
    imported = {dst for path in TESTS.rglob("*.py") for dst, _, _ in imports(path)}
    imported |= {".".join(m.split(".")[:i]) for m in imported for i in range(1, m.count(".") + 1)}
    untested = sorted(set(MODULES) - imported - {"unetkit.__main__"})
    assert not untested, untested


@pytest.mark.parametrize("name", ["__main__"])
def test_the_entry_point_runs_the_cli(name):
    assert "from unetkit.cli import main" in (SRC / f"{name}.py").read_text()
