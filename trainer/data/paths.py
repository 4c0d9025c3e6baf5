"""Finding what data_dir names: Windows paths, hidden files, the one file of a kind."""

from __future__ import annotations

import re
from pathlib import Path

from trainer.data.base import DataError

WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")
IGNORED_NAMES = {"__MACOSX"}  # what macOS adds to zip files: resource forks, not data


def resolve_data_dir(raw: str) -> Path:
    """``raw`` as an existing path; a Windows path from seed 003's config (``E:\\\\data\\\\x``)
    is tried with forward slashes too."""
    path = Path(raw).expanduser()
    if path.exists():
        return path
    if "\\" in raw:
        forward = Path(raw.replace("\\", "/")).expanduser()
        if forward.exists():
            return forward
    raise DataError(not_found_message(raw))


def not_found_message(raw: str) -> str:
    message = (f'data_dir "{raw}" does not exist (relative paths are resolved from the current '
               f"directory, {Path.cwd()})")
    if WINDOWS_DRIVE.match(raw):
        message += "; it is a Windows drive path: set data_dir to where the data is on this machine"
    return message


def visible(path: Path) -> bool:
    return not path.name.startswith(".") and path.name not in IGNORED_NAMES


def visible_children(folder: Path) -> list[Path]:
    return sorted(child for child in folder.iterdir() if visible(child))


def files_with_suffix(folder: Path, suffix: str) -> list[Path]:
    return [p for p in visible_children(folder) if p.is_file() and p.suffix.lower() == suffix]


def the_file(path: Path, suffix: str, what: str) -> Path:
    """``path`` itself when it is a ``suffix`` file, else the one such file in the folder ``path``."""
    if path.is_file():
        if path.suffix.lower() != suffix:
            raise DataError(f"{what} needs a {suffix} file; {path} is not one")
        return path
    found = files_with_suffix(path, suffix)
    if len(found) != 1:
        names = ", ".join(p.name for p in found) or f"no {suffix} file"
        raise DataError(f"{what}: data_dir {path} should hold exactly one {suffix} file, it holds {names}; "
                        f"set data_dir to the file itself")
    return found[0]
