"""Where LASER's model files are, found without importing torch or laserembeddings (a pass that
finds nothing new never loads them)."""

from __future__ import annotations

import importlib.util
import os
import pathlib

LASER_FILES = ("93langs.fcodes", "93langs.fvocab", "bilstm.93langs.2018-12-26.pt")
MISSING_LASER_HINT = (
    "LASER models not found: run `python -m laserembeddings download-models [DIR]` "
    "or pass --laser-dir DIR"
)


def _is_complete(directory: pathlib.Path) -> bool:
    return all((directory / name).is_file() for name in LASER_FILES)


def default_laser_dir() -> pathlib.Path | None:
    """laserembeddings' own data dir (its `Laser.DATA_DIR`, the default download target)."""
    spec = importlib.util.find_spec("laserembeddings")
    if spec is None or spec.origin is None:
        return None
    return pathlib.Path(os.path.realpath(spec.origin)).parent / "data"


LASER_DIR_ENV = "FEATSTORE_LASER_DIR"


def find_laser_dir(laser_dir: str | os.PathLike | None) -> pathlib.Path | None:
    """Directory holding the three LASER files, or None: `laser_dir`, else $FEATSTORE_LASER_DIR,
    else laserembeddings' own data dir.

    A directory named (by argument or environment) is never second-guessed: if it is incomplete
    the answer is None rather than a silent switch to laserembeddings' own data dir (the default
    download target).
    """
    if laser_dir is None and os.environ.get(LASER_DIR_ENV):
        laser_dir = os.environ[LASER_DIR_ENV]
    if laser_dir is not None:
        path = pathlib.Path(laser_dir).expanduser()
        return path if _is_complete(path) else None
    default = default_laser_dir()
    return default if default is not None and _is_complete(default) else None
