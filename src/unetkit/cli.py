"""Command line: build_parser() and main(argv) -> exit code; one short cmd_* per subcommand."""

from __future__ import annotations

import argparse
import sys

from unetkit import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unetkit", description=__doc__)
    parser.add_argument("--version", action="version", version=f"unetkit {__version__}")
    parser.add_subparsers(dest="command")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
