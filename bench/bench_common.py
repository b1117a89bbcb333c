"""Helpers every bench script shares: comma-separated integer options and the print/--json ending.

Scripts import it after putting their own folder on sys.path (the bench folder is not a package).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from dctq.cli.options import split_ints
from dctq.common.files import write_text_atomic


def int_list(text: str) -> list[int]:
    """'1, 8,32' -> [1, 8, 32], split as the dctq commands split theirs (cli.options.split_ints). A
    non-integer item raises ValueError, which argparse reports as a bad value of the option."""
    return list(split_ints(text))


def script_main(
    parse_args: Callable[[list[str] | None], argparse.Namespace],
    run: Callable[[argparse.Namespace], dict[str, Any]],
    markdown: Callable[[dict[str, Any]], str],
    argv: list[str] | None = None,
) -> dict[str, Any]:
    """Parse, run, print the markdown table and, with --json, write the result there atomically."""
    args = parse_args(argv)
    result = run(args)
    print(markdown(result))
    if args.json:
        write_text_atomic(args.json, json.dumps(result, indent=2) + "\n")
    return result
