"""What every ortel command does with bad input: one clear line on stderr, exit code 2."""

from __future__ import annotations

import sys
from typing import NoReturn

import click


def fail(message: str) -> NoReturn:
    """Bad input: one clear line on stderr, exit code 2, no traceback. Control characters the
    message quotes (a file name with a newline in it) are escaped, so it stays one line."""
    line = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in message)
    click.echo(f"ortel: error: {line}", err=True)
    sys.exit(2)
