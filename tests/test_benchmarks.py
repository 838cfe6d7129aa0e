"""Benchmarks build only on the declared public surface (unetkit, unetkit.api), so they measure what
the CLI runs, and each script at least starts."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.mark.parametrize("script", ["bench_train.py", "bench_infer.py", "bench_cache.py"])
def test_benchmark_scripts_start(script):
    done = subprocess.run([sys.executable, str(BENCH / script), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "usage:" in done.stdout, done.stderr
