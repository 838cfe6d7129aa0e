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
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "unetkit":
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "unetkit"}
    return found


def test_benchmarks_import_only_the_public_surface():
    scripts = sorted(BENCH.glob("*.py"))
    assert len(scripts) >= 6
    for script in scripts:
        assert unetkit_imports(script) <= PUBLIC, (script.name, unetkit_imports(script) - PUBLIC)


def test_benchmark_scripts_compile_and_one_starts():
    for script in BENCH.glob("*.py"):
        py_compile.compile(str(script), doraise=True)
    done = subprocess.run([sys.executable, str(BENCH / "bench_cache.py"), "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "usage:" in done.stdout, done.stderr
