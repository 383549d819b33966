"""The one exception type the CLI turns into an exit code (no traceback)."""


class HawqError(Exception):
    """A failure the user can act on; the message is one line. Exit code 1."""

    exit_code = 1


class InputError(HawqError):
    """Bad input or usage: a missing/invalid file, a bad option value. Exit code 2."""

    exit_code = 2


def close_matches(name: str, candidates, n: int = 3) -> str:
    """Return ' (did you mean: a, b?)' for names close to `name`, or ''."""
    import difflib

    found = difflib.get_close_matches(name, list(candidates), n=n, cutoff=0.5)
    return f" (did you mean: {', '.join(found)}?)" if found else ""
