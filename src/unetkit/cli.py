"""unetkit: train, evaluate and run U-Net segmentation models.

build_parser() and main(argv) -> exit code. Each command lives in unetkit/commands/ and only turns
arguments into a config and calls one library function. Every UnetkitError becomes one
`error: ...` line and exit code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from unetkit import distributed
from unetkit._version import __version__
from unetkit.commands import annotate, data, evaluate, export, label_studio, models, predict, serve, train
from unetkit.errors import UnetkitError
from unetkit.runtime import process_age

COMMANDS = {
    "train": train, "evaluate": evaluate, "predict": predict, "export": export, "serve": serve,
    "annotate": annotate, "data": data, "models": models, "label-studio": label_studio,
}  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unetkit", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"unetkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS.values():
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Run as a program (argv from the command line): the seconds it took to start count against a budget.
    args.startup_s = process_age() if argv is None else 0.0
    if args.command is None:
        parser.print_help()
        return 0
    code = 1
    try:
        code = COMMANDS[args.command].run(args)
        return code
    except UnetkitError as e:
        print(f"error: {e}", file=sys.stderr)
        code = 2
        return code
    except BrokenPipeError:  # the reader went away (`unetkit models | head`): not an error
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        code = 0
        return code
    except OSError as e:
        where = e.filename or "a file"
        print(f"error: cannot write or read {where}: {e.strerror}; check the path and its permissions", file=sys.stderr)
        code = 2
        return code
    except KeyboardInterrupt:
        print("aborted", file=sys.stderr)
        code = 130
        return code
    finally:
        if "torch.distributed" in sys.modules:
            distributed.exit_if_distributed(code)


if __name__ == "__main__":
    sys.exit(main())
