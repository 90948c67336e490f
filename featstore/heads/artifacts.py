"""Head artifacts on disk: STORE/heads/NAME/{head.json, head-<sha>.safetensors}. No pickle.

This module reads and writes a dict (head.json) and named arrays (the safetensors file); what
they mean is the estimator's business. The safetensors file holds every array (network weights
under `net.`, further ensemble members under `net1.`, ..., logistic regression under `logreg.`,
normaliser statistics under `norm.`); head.json holds the configuration, label map, metrics and
the fingerprints of the encoder and fusion sources.

Heads are store citizens. head.json is the commit point: it names its weights file (named by
content) with that file's SHA-256, and carries a SHA-256 of its own canonical JSON. A save writes
the new weights file first, then replaces head.json in one atomic rename, then removes the old
weights: a save killed at any moment leaves the old head or the new one, and a flipped bit in
either file is refused in one line, by `load` and by `featstore verify`. Head writers take
heads/.lock, so two saves never interleave; no head file, nor heads/ itself, may be a link.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from featstore.heads.errors import HeadError
from featstore.store import StoreError, check_name
from featstore.store.atomic import fsync_path, publish
from featstore.store.hashing import sha256_bytes, sha256_json
from featstore.store.lock import WriterLock
from featstore.store.safe_paths import check_no_links, open_no_follow, real_dir

if TYPE_CHECKING:  # numpy and safetensors load where arrays are read or written: listing heads
    import numpy as np  # and refusing a taken name stay light

    from featstore.store import Store

HEADS_DIR = "heads"
CONFIG = "head.json"
LEGACY_WEIGHTS = "head.safetensors"  # format 1: one fixed name, no checksums
FORMAT = "featstore-head"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
_OWN_WEIGHTS = re.compile(r"head-[0-9a-f]{16}\.safetensors")
_OWN_TMP = re.compile(r"\.[A-Za-z0-9._-]+\.tmp")
_LEGACY_LEFTOVER = re.compile(r"\.(tmp|old)-(.+)-[0-9a-f]{8}")
_STAGING = re.compile(r"\.new-.+-[0-9a-f]{8}")
_REMOVING = re.compile(r"\.rm-.+-[0-9a-f]{8}")
LOCK_WAIT_S = 120.0
LOCK_ADVICE = f"it held the heads' lock for {LOCK_WAIT_S:.0f} s; try again once it is done"


def _root(store: Store | str | os.PathLike) -> Path:
    if isinstance(store, str | os.PathLike):
        return Path(store)
    return Path(store.root)  # an open store


def head_dir(store: Store | str | os.PathLike, name: str) -> Path:
    check_name(name, "head")
    root = _root(store)
    return check_no_links(root, root / HEADS_DIR / name)


def list_heads(store: Store | str | os.PathLike) -> list[str]:
    root = _root(store)
    base = check_no_links(root, root / HEADS_DIR)
    if not base.is_dir():
        return []
    with os.scandir(base) as it:
        return sorted(e.name for e in it if not e.name.startswith(".")
                      and (e.is_dir(follow_symlinks=False) or e.is_symlink()))


def refuse_existing_head(store: Store | str | os.PathLike, name: str, overwrite: bool) -> None:
    """A saved head is never replaced silently."""
    if not overwrite and os.path.lexists(head_dir(store, name)):
        raise HeadError(f"head {name!r} already exists in {_root(store)}; choose another name "
                        "(--out NAME) or pass --overwrite (overwrite=True)")


def remove_head(store: Store | str | os.PathLike, name: str) -> None:
    """Delete STORE/heads/NAME: its directory goes in one rename, then its files."""
    root = _root(store)
    target = head_dir(root, name)
    if not os.path.lexists(target):
        known = ", ".join(list_heads(root)) or "none"
        raise HeadError(f"no head {name!r} in {root} (heads: {known})")
    heads = real_dir(root, HEADS_DIR)
    with WriterLock(heads / ".lock", wait=True, timeout=LOCK_WAIT_S, advice=LOCK_ADVICE):
        target = real_dir(root, HEADS_DIR, name)
        doomed = heads / f".rm-{name}-{uuid.uuid4().hex[:8]}"
        os.rename(target, doomed)
        fsync_path(heads)
        sweep_head_leftovers(root)


def _document_checksum(doc: dict[str, Any]) -> str:
    return sha256_json({k: v for k, v in doc.items() if k != "checksum"})


def _write_file(path: Path, data: bytes) -> None:
    """Write a new file under a temporary name, fsynced; never through a link."""
    fd = open_no_follow(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    with open(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def write_head(store: Store | str | os.PathLike, name: str, tensors: dict[str, np.ndarray],
               doc: dict[str, Any], overwrite: bool = False) -> Path:
    """Save a head's arrays and document as STORE/heads/NAME; a head of that name is replaced
    (in one atomic step) only with `overwrite`. Returns the head's directory."""
    root = _root(store)
    check_name(name, "head")
    refuse_existing_head(root, name, overwrite)
    import numpy as np
    from safetensors import SafetensorError
    from safetensors.numpy import save

    try:
        weights = save({k: np.ascontiguousarray(v) for k, v in tensors.items()},
                       metadata={"format": FORMAT})
    except (SafetensorError, ValueError, TypeError) as exc:
        raise HeadError(f"head {name}: its arrays cannot be saved ({exc})") from None
    digest = sha256_bytes(weights)
    wfile = f"head-{digest[:16]}.safetensors"
    full = {"format": FORMAT, "format_version": FORMAT_VERSION,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), **doc,
            "weights": {"file": wfile, "sha256": digest, "bytes": len(weights)}}
    try:
        full["checksum"] = _document_checksum(full)
        text = json.dumps(full, indent=1, sort_keys=True, allow_nan=True) + "\n"
    except (TypeError, ValueError) as exc:
        raise HeadError(f"head {name}: labels or metrics are not JSON-serialisable ({exc})"
                        ) from None
    heads = real_dir(root, HEADS_DIR, create=True)
    with WriterLock(heads / ".lock", wait=True, timeout=LOCK_WAIT_S, advice=LOCK_ADVICE):
        sweep_head_leftovers(root)
        target = real_dir(root, HEADS_DIR, name)
        refuse_existing_head(root, name, overwrite)  # again, now that no one else writes
        tag = uuid.uuid4().hex[:8]
        if not os.path.lexists(target):
            # a new head: staged whole, then one rename makes it appear
            staging = real_dir(root, HEADS_DIR, f".new-{name}-{tag}", create=True)
            _write_file(staging / wfile, weights)
            _write_file(staging / CONFIG, text.encode("utf-8"))
            fsync_path(staging)
            os.rename(staging, target)
        else:
            # an existing head: new weights beside the old, then head.json replaced (the commit)
            tmp_weights = target / f".{wfile}.{tag}.tmp"
            _write_file(tmp_weights, weights)
            publish(tmp_weights, target / wfile)
            tmp_doc = target / f".{CONFIG}.{tag}.tmp"
            _write_file(tmp_doc, text.encode("utf-8"))
            publish(tmp_doc, target / CONFIG)
            _remove_unreferenced(target, keep=wfile)
        fsync_path(heads)
    return target


def _remove_unreferenced(target: Path, keep: str) -> None:
    """Old weights and temporary files of one head, once head.json no longer names them."""
    with os.scandir(target) as it:
        for e in it:
            own = _OWN_WEIGHTS.fullmatch(e.name) or _OWN_TMP.fullmatch(e.name) or \
                e.name == LEGACY_WEIGHTS
            if own and e.name != keep and e.is_file(follow_symlinks=False):
                os.unlink(e.path)


def sweep_head_leftovers(root: Path) -> list[str]:
    """Directories a killed save or removal left: staged new heads (`.new-NAME-*`) and removed
    ones (`.rm-NAME-*`) are deleted; those of an
    older featstore (`.tmp-NAME-*`, `.old-NAME-*`) are put back where the head itself is
    missing, else removed. Call with heads/.lock held."""
    heads = root / HEADS_DIR
    if not heads.is_dir():
        return []
    done = []
    with os.scandir(heads) as it:
        entries = [(e.name, e.path) for e in it if e.is_dir(follow_symlinks=False)]
    for entry, path in entries:
        if _STAGING.fullmatch(entry) or _REMOVING.fullmatch(entry):
            shutil.rmtree(path)
            done.append(f"removed {entry}")
    leftovers = sorted((n, p) for n, p in entries if _LEGACY_LEFTOVER.fullmatch(n))
    for kind in ("tmp", "old"):  # a complete new head first, else the old one
        for entry, path in leftovers:
            m = _LEGACY_LEFTOVER.fullmatch(entry)
            if m is None or m.group(1) != kind or not os.path.isdir(path):
                continue
            home = heads / m.group(2)
            if not os.path.lexists(home) and os.path.isfile(os.path.join(path, CONFIG)) and \
                    os.path.isfile(os.path.join(path, LEGACY_WEIGHTS)):
                os.replace(path, home)
                done.append(f"restored head {m.group(2)} from {entry}")
            else:
                shutil.rmtree(path)
                done.append(f"removed {entry}")
    return done


def _read_file(path: Path, what: str) -> bytes:
    try:
        fd = open_no_follow(path, os.O_RDONLY)
    except StoreError as exc:
        raise HeadError(f"{what}: {exc}") from None
    try:
        with open(fd, "rb") as fh:
            return fh.read()
    except IsADirectoryError:
        raise HeadError(f"{what} is a directory, not a file (damaged)") from None
    except OSError as exc:
        raise HeadError(f"{what} cannot be read ({exc.strerror})") from None


def read_head_json(store: Store | str | os.PathLike, name: str) -> dict[str, Any]:
    """A head's document, checked: valid JSON of a known format whose checksum matches."""
    root = _root(store)
    home = head_dir(store, name)
    path = home / CONFIG
    if not os.path.lexists(home):
        known = ", ".join(list_heads(root))
        raise HeadError(f"no head {name!r} in {root / HEADS_DIR} (heads: {known or 'none'})")
    if not os.path.isdir(home):
        raise HeadError(f"head {name}: {home} is not a directory (damaged)")
    if not os.path.lexists(path):
        raise HeadError(f"head {name}: {CONFIG} is missing (damaged); fit the head again or "
                        f"remove {home}")
    raw = _read_file(path, f"head {name}: {CONFIG}")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HeadError(f"head {name}: {CONFIG} is damaged (not valid JSON: {exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or \
            doc.get("format_version") not in READABLE_VERSIONS:
        raise HeadError(f"head {name}: {CONFIG} is not a {FORMAT} artifact of version "
                        f"{' or '.join(map(str, READABLE_VERSIONS))} (damaged?)")
    if doc["format_version"] >= 2 and doc.get("checksum") != _document_checksum(doc):
        raise HeadError(f"head {name}: {CONFIG} fails its checksum (damaged or edited by hand); "
                        "fit the head again")
    return doc


def _weights_entry(doc: dict[str, Any], name: str) -> dict[str, Any]:
    if doc["format_version"] < 2:
        return {"file": LEGACY_WEIGHTS}
    entry = doc.get("weights")
    if not isinstance(entry, dict) or not isinstance(entry.get("file"), str) or \
            not _OWN_WEIGHTS.fullmatch(entry["file"]):
        raise HeadError(f"head {name}: {CONFIG} names no valid weights file (damaged)")
    return entry


def read_head(store: Store | str | os.PathLike, name: str
              ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """A head's document and arrays, each checked against the checksums head.json carries."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    for attempt in (1, 2):  # a save may replace the head between reading its two files
        doc = read_head_json(store, name)
        entry = _weights_entry(doc, name)
        path = head_dir(store, name) / entry["file"]
        if not os.path.lexists(path) and attempt == 1:
            continue
        raw = _read_file(path, f"head {name}: {entry['file']}")
        if "sha256" in entry and (len(raw) != entry.get("bytes")
                                  or sha256_bytes(raw) != entry["sha256"]):
            raise HeadError(f"head {name}: {entry['file']} fails its checksum (damaged); fit "
                            "the head again")
        try:
            return doc, load(raw)
        except (SafetensorError, ValueError, TypeError, KeyError) as exc:
            raise HeadError(f"head {name}: {entry['file']} is damaged ({exc})") from None
    raise HeadError(f"head {name}: its weights file is missing (damaged)")


Restored = TypeVar("Restored")


def restore_head(store: Store | str | os.PathLike, name: str,
                 restore: Callable[[dict[str, Any], dict[str, np.ndarray]], Restored]
                 ) -> Restored:
    """Read head NAME and rebuild it with `restore(doc, tensors)`; a document whose fields do
    not fit what `restore` expects is one line, never a traceback."""
    doc, tensors = read_head(store, name)
    try:
        return restore(doc, tensors)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise HeadError(f"head {name}: head.json is malformed ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''})") from None


def verify_heads(store: Store | str | os.PathLike) -> tuple[list[str], list[str]]:
    """(problems, notes): every damaged head, one line each; heads saved without checksums."""
    problems, notes = [], []
    for name in list_heads(store):
        try:
            doc, _ = read_head(store, name)
        except (HeadError, StoreError) as exc:
            problems.append(str(exc))
            continue
        if doc["format_version"] < 2:
            notes.append(f"head {name} was saved without checksums; fit it again to protect it")
    return problems, notes
