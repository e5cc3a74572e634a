"""What every ortel command does with bad input: one clear line on stderr, exit code 2."""

from __future__ import annotations

import sys
from typing import NoReturn

import click


def fail(message: str) -> NoReturn:
    """Bad input: one clear line on stderr, exit code 2, no traceback."""
    click.echo(f"ortel: error: {message}", err=True)
    sys.exit(2)
