"""Entry point: `onnx-hawq <command>`; HawqError -> one-line message and its exit code."""

from __future__ import annotations

import importlib
import logging
import signal
import sys
import threading

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


INTERRUPTED = 130  # Ctrl-C or SIGTERM (CI cancellation): not a failed gate (1) nor bad input (2)


def _sigterm(signum, frame):
    raise KeyboardInterrupt  # unwinds like Ctrl-C: temp files are removed on the way out


def _one_line(message: str) -> str:
    return " ".join(line.strip() for line in message.strip().splitlines() if line.strip())


def main(argv=None) -> int:
    """Run the CLI; map HawqError to its exit code with a one-line message, no traceback; click's usage
    errors are one `error:` line too (exit 2); Ctrl-C and SIGTERM exit 130."""
    logging.basicConfig(format="%(message)s", level=logging.WARNING)
    logging.getLogger("onnx_hawq").setLevel(logging.WARNING)  # -v/-q of an earlier in-process call
    previous = _install_sigterm()
    try:
        cli.main(args=argv, prog_name="onnx-hawq", standalone_mode=False)
    except HawqError as e:
        click.echo(f"error: {e}", err=True)
        return e.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("interrupted", err=True)
        return INTERRUPTED
    except click.exceptions.NoArgsIsHelpError as e:
        e.show()  # `onnx-hawq` alone: the help text
        return 2
    except click.ClickException as e:
        click.echo(f"error: {_one_line(e.format_message())}", err=True)
        return 2 if isinstance(e, click.UsageError) else e.exit_code
    except click.exceptions.Exit as e:
        return e.exit_code
    finally:
        _restore_sigterm(previous)
    return 0


def _install_sigterm():
    """SIGTERM -> KeyboardInterrupt while a command runs (main thread only); returns the old handler."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _sigterm)


def _restore_sigterm(previous) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
