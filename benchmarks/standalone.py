"""The command line every benchmark module offers when run on its own.

    python benchmarks/<module>.py [--quick] [--<size> N ...] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable


def run_standalone(doc: str, measure: Callable[..., dict[str, Any]], markdown: Callable[[dict[str, Any]], str], *,
                   quick_help: str, sizes: dict[str, str] | None = None) -> None:
    """Parse ``--quick``, the workload ``sizes`` (name -> help; integers) and ``--json``,
    measure, print the Markdown, and write the figures as JSON when asked."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0].splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    for name, text in (sizes or {}).items():
        parser.add_argument(f"--{name}", type=int, help=text)
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()
    chosen = {name: getattr(args, name) for name in sizes or {} if getattr(args, name) is not None}
    result = measure(quick=args.quick, **chosen)
    print(markdown(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
