"""Entry point: `onnx-hawq <command>`; HawqError -> one-line message and its exit code."""

from __future__ import annotations

import importlib
import logging
import sys

import click

from onnx_hawq.version import __version__
from onnx_hawq.errors import HawqError

# command name -> module under onnx_hawq.cli that defines `command`
COMMANDS = {
    "quantize": "quantize",
    "inspect": "inspect",
    "sensitivity": "sensitivity",
    "plan": "plan",
    "profile": "profile",
    "validate": "validate",
    "auto": "auto",
    "compile": "compile",
}


class LazyGroup(click.Group):
    """Imports a command's module only when it runs, so `--help` needs no torch or tvm."""

    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        return importlib.import_module(f"onnx_hawq.cli.{COMMANDS[name]}").command


@click.group(cls=LazyGroup)
@click.version_option(__version__, prog_name="onnx-hawq")
def cli():
    """Hessian-aware mixed-precision integer quantization for ONNX models."""


def main(argv=None) -> int:
    """Run the CLI; map HawqError to its exit code with a one-line message, no traceback."""
    logging.basicConfig(format="%(message)s", level=logging.WARNING)
    logging.getLogger("onnx_hawq").setLevel(logging.WARNING)  # -v/-q of an earlier in-process call
    try:
        cli.main(args=argv, prog_name="onnx-hawq", standalone_mode=False)
    except HawqError as e:
        click.echo(f"error: {e}", err=True)
        return e.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 1
    except click.ClickException as e:
        e.show()
        return 2 if isinstance(e, click.UsageError) else e.exit_code
    except click.exceptions.Exit as e:
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
