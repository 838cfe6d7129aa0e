"""The README, the guides and RESULTS.md stay true to the code: relative links resolve, every flag a
`unetkit ...` command shows exists in that command's --help, and every RESULTS section names the
script that writes it."""

import ast
import functools
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
GROUPS = {"data"}  # commands with actions of their own: `unetkit data convert` has its own --help
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
COMMAND = re.compile(r"unetkit ((?:[a-z][a-z-]*)(?: [a-z][a-z-]*)?)([^`\n]*)")


def links(text: str) -> list[str]:
    return [t for t in LINK.findall(text) if not t.startswith(("http://", "https://", "mailto:", "#"))]


def anchors(path: Path) -> set[str]:
    """GitHub's anchors of a markdown file's headings."""
    heads = re.findall(r"^#+ (.+)$", path.read_text(), re.M)
    return {re.sub(r"[^a-z0-9 _-]", "", h.lower()).replace(" ", "-") for h in heads}


@pytest.mark.parametrize("doc", DOCS + [RESULTS], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(doc):
    broken = []
    for target in links(doc.read_text()):
        path, _, anchor = target.partition("#")
        dest = (doc.parent / path).resolve() if path else doc
        if not dest.exists() or (anchor and dest.suffix == ".md" and anchor not in anchors(dest)):
            broken.append(target)
    assert not broken, f"{doc.name}: links to nothing: {broken}"


@functools.cache
def help_flags(command: str) -> frozenset[str]:
    out = subprocess.run([sys.executable, "-m", "unetkit", *command.split(), "--help"], capture_output=True,
                         text=True, cwd=ROOT)  # fmt: skip
    assert out.returncode == 0, f"`unetkit {command} --help` failed: {out.stderr[-500:]}"
    return frozenset(re.findall(r"(--[a-z][a-z0-9_-]*)", out.stdout))


def shown_commands(text: str) -> list[tuple[str, set[str]]]:
    """(command, flags) of each `unetkit CMD ...` in code: inline spans and fenced blocks."""
    code = re.findall(r"```.*?```", text, re.S) + re.findall(r"`[^`\n]+`", text)
    found = []
    for span in code:
        for m in COMMAND.finditer(span):
            words = m.group(1).split()
            command = " ".join(words[:2]) if words[0] in GROUPS and len(words) > 1 else words[0]
            rest = " ".join(words[1:]) if command == words[0] else ""
            found.append((command, set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9_-]*)", rest + m.group(2)))))
    return found


def test_the_check_finds_a_flag_that_does_not_exist():
    shown = shown_commands("run `unetkit train --data DIR --no-such-flag 3` then `unetkit data convert A B --to coco`")
    assert shown == [("train", {"--data", "--no-such-flag"}), ("data convert", {"--to"})]
    assert "--no-such-flag" not in help_flags("train") and "--to" in help_flags("data convert")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_flag_shown_exists(doc):
    import unetkit.cli

    commands = set(unetkit.cli.build_parser()._subparsers._group_actions[0].choices)
    wrong = []
    for command, flags in shown_commands(doc.read_text()):
        if command.split()[0] not in commands:
            continue  # prose such as "unetkit is": not a command
        wrong += [f"unetkit {command} {f}" for f in sorted(flags - help_flags(command))]
    assert not wrong, f"{doc.name} shows flags the CLI does not have: {wrong}"


def sections(text: str) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in re.finditer(r"<!-- (?!/)(.+?) -->(.*?)<!-- /\1 -->", text, re.S)}


def names_written(script: Path) -> set[str]:
    """Section names (or their leading part) a script can write: its string constants and the literal
    heads of its f-strings."""
    found = set()
    for node in ast.walk(ast.parse(script.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.add(node.value)
        elif isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
            found.add(node.values[0].value)
    return {s for s in found if len(s) >= 4 and re.fullmatch(r"[a-z][a-z0-9-]*", s)}


def test_every_results_section_names_the_script_that_writes_it():
    found = sections(RESULTS.read_text())
    assert len(found) >= 20
    for name, body in found.items():
        command = re.search(r"Command: `[^`]*?benchmarks/(\w+\.py)", body)
        assert command, f"RESULTS section {name!r} names no command"
        script = RESULTS.parent / command.group(1)
        assert script.is_file(), f"RESULTS section {name!r}: {script.name} does not exist"
        source = script.read_text()
        assert "write_section(" in source, f"{script.name} writes no section, yet {name!r} names it"
        assert any(name.startswith(s) for s in names_written(script)), f"{script.name} cannot write {name!r}"


def test_every_benchmark_script_writes_a_section_or_is_a_helper():
    helpers = {"common.py", "make_splits.py"}  # shared code; the seeded splits the recipes read
    for script in sorted(RESULTS.parent.glob("*.py")):
        if script.name not in helpers:
            assert "write_section(" in script.read_text(), f"{script.name} writes no RESULTS section"
