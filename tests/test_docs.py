"""The README says what the code does."""

import json
import re
from pathlib import Path

from tiller.trainer.cli.commands import build_parser
from tiller.trainer.steering.config import describe_keys

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def key_row(row: dict) -> str:
    changes = f"yes, {row['applies']}" if row["hot"] else "no"
    return (f"| `{row['key']}` | `{json.dumps(row['default'])}` | {row['bounds'] or '—'} | {changes} | "
            f"{row['description']} |")


def test_readme_config_table_matches_the_schema():
    table = [line for line in README.splitlines() if re.match(r"\| `\w+` \| `", line)]
    assert table == [key_row(row) for row in describe_keys()]


def test_quickstart_is_two_commands_demo_then_tests():
    block = README.split("## Quickstart", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line for line in block.splitlines() if line and not line.startswith("#")]
    assert len(commands) == 2
    assert commands[0].endswith("tiller demo") and commands[1].endswith("pytest")


def test_readme_lists_every_cli_command():
    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    for name in subparsers.choices:
        assert f"`tiller {name}" in README, name
