"""Benchmarks build only on the declared public surface (unetkit, unetkit.api), so they measure what
the CLI runs, and each script at least starts."""

import ast
import py_compile
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
PUBLIC = {"unetkit", "unetkit.api"}


def unetkit_imports(path: Path) -> set[str]:
    """Every first-party name a file imports: `unetkit.api` for `import unetkit.api`, `unetkit:load`
    for `from unetkit import load` (a name, or an internal module reached through the package)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "unetkit":
            found.add(node.module)
            found |= {f"{node.module}:{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "unetkit"}
    return found


def outside_the_surface(names: set[str]) -> set[str]:
    import unetkit
    import unetkit.api

    exported = {"unetkit": set(unetkit.__all__), "unetkit.api": set(unetkit.api.__all__) | {"create_app"}}
    modules = {n for n in names if ":" not in n}
    imported = {tuple(n.split(":")) for n in names if ":" in n}
    return (modules - PUBLIC) | {f"{m}:{a}" for m, a in imported if a not in exported.get(m, set())}


def test_the_surface_check_catches_an_internal_module_reached_through_the_package(tmp_path):
    script = tmp_path / "bad.py"
    script.write_text("from unetkit import builtin\nfrom unetkit.api import fit\nfrom unetkit.infer import predict\n")
    assert outside_the_surface(unetkit_imports(script)) == {"unetkit:builtin", "unetkit.infer", "unetkit.infer:predict"}


def test_benchmarks_import_only_the_public_surface():
    scripts = sorted(BENCH.glob("*.py"))
    assert len(scripts) >= 6
    for script in scripts:
        assert not outside_the_surface(unetkit_imports(script)), (
            script.name,
            outside_the_surface(unetkit_imports(script)),
        )


def test_benchmark_scripts_compile_and_one_starts():
    for script in BENCH.glob("*.py"):
        py_compile.compile(str(script), doraise=True)
    done = subprocess.run([sys.executable, str(BENCH / "bench_cache.py"), "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "usage:" in done.stdout, done.stderr
