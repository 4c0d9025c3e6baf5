"""Finding what data_dir names: Windows paths, hidden files, the one file of a kind."""

from __future__ import annotations

import difflib
import re
from pathlib import Path

from tiller.trainer.data.base import DataError

WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")
# Not data: what macOS adds to zip files (resource forks) and what Windows Explorer leaves in
# picture folders (thumbnail caches, folder settings).
IGNORED_NAMES = {"__MACOSX", "Thumbs.db", "desktop.ini"}


def resolve_data_dir(raw: str, expected: str = "") -> Path:
    """``raw`` as an existing path; a Windows path from seed 003's config (``E:\\\\data\\\\x``)
    is tried with forward slashes too. ``expected`` (what data_dir should name) goes into
    the message when nothing is there."""
    path = Path(raw).expanduser()
    if path.exists():
        return path
    if "\\" in raw:
        forward = Path(raw.replace("\\", "/")).expanduser()
        if forward.exists():
            return forward
    raise DataError(not_found_message(raw, expected))


def not_found_message(raw: str, expected: str = "") -> str:
    message = (f'data_dir "{raw}" does not exist (relative paths are resolved from the current '
               f"directory, {Path.cwd()})")
    if WINDOWS_DRIVE.match(raw):
        message += "; it is a Windows drive path: set data_dir to where the data is on this machine"
    else:
        message += nearest_existing(Path(raw.replace("\\", "/")).expanduser())
    if expected:
        message += f"; it should name {expected}"
    return message


def nearest_existing(path: Path) -> str:
    """A hint for a path that is not there: a near spelling beside it (a typo), or else the
    deepest folder above it that exists (a drive or share that is not mounted)."""
    parent = path.parent
    if parent.is_dir():
        by_lower = {child.name.lower(): child.name for child in parent.iterdir() if visible(child)}
        close = difflib.get_close_matches(path.name.lower(), by_lower, n=1, cutoff=0.6)
        return f'; did you mean "{parent / by_lower[close[0]]}"?' if close else ""
    ancestor = next((p for p in path.parents if p.is_dir()), None)
    return f"; the deepest folder of it that exists is {ancestor}" if ancestor else ""


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
