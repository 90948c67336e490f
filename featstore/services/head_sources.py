"""Encoding new texts with every source a head reads: its encoder, a fused second encoder, and
LASER. Imported vectors cannot be computed here, so texts they lack are refused before anything
is encoded, naming the source and the `import-vectors --add` command that adds their vectors.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, replace

from featstore.featurize.driver import featurize_texts
from featstore.featurize.laser_files import find_laser_dir
from featstore.featurize.options import FeaturizeOptions
from featstore.featurize.sources import find_stored_encoder, laser_fingerprint
from featstore.services.featurizing import Say, featurize_missing
from featstore.store import FeatstoreError, Store, clean_text, fingerprints_match, keys_for


class SourceCannotEncode(FeatstoreError):
    """New texts a head's source cannot be given here (imported vectors, LASER without its
    models)."""


@dataclass
class _Todo:
    kind: str
    fingerprint: dict
    features: list[str]
    texts: list[str]
    source_id: str


def _lacking(store: Store, texts: list[str], fingerprint: dict, features: Sequence[str]
             ) -> _Todo | None:
    """The texts one source lacks, or None when it lacks none (or never stores these
    features: the head's own check names the featurize flag that adds them)."""
    source = find_stored_encoder(store, fingerprint)
    if source is None:
        name = fingerprint.get("model") or fingerprint.get("name") or fingerprint.get("kind")
        raise FeatstoreError(f"store {store.root} holds no source with the fingerprint of "
                             f"{name}; refit the head on this store")
    entry = store.encoder_entry(source)
    if not set(features) <= set(entry.feature_shapes):
        return None
    missing = ~store.has(source, keys_for(texts), list(features))
    new = list(dict.fromkeys(t for t, m in zip(texts, missing.tolist(), strict=True) if m))
    if not new:
        return None
    return _Todo(entry.kind, entry.fingerprint, list(features), new, source)


def _refuse_imported(store: Store, todo: _Todo, given: int) -> None:
    name = todo.fingerprint.get("name", todo.source_id)
    command = shlex.join(["featstore", "import-vectors", "--store", str(store.root), "--name",
                          str(name), "--add", "FILE"])
    raise SourceCannotEncode(
        f"{len(todo.texts)} of the {given} given texts have no vectors in the imported source "
        f"{name!r}, which featstore cannot compute; nothing was encoded: add them with "
        f"`{command}` (FILE: these texts and their {todo.fingerprint.get('dim')}-wide vectors, "
        "made as the source's were), then run this again")


def _laser_options(store: Store, todo: _Todo, todos: list[_Todo],
                   laser_dir: str | None) -> FeaturizeOptions:
    """A pass that adds LASER vectors of these texts, refused before any encoding when LASER's
    models are not found or are not the ones that computed the stored vectors."""
    found = find_laser_dir(laser_dir)
    if found is None:
        where = f" in {laser_dir}" if laser_dir else ""
        raise SourceCannotEncode(
            f"{len(todo.texts)} of the given texts have no LASER vectors, and LASER's models "
            f"are not found{where}; nothing was encoded: pass --laser-dir DIR (in Python, set "
            "FEATSTORE_LASER_DIR=DIR), DIR holding the models featurize read, or run `python -m "
            "laserembeddings download-models`")
    stored = todo.fingerprint
    here = laser_fingerprint(found)
    if not fingerprints_match({**here, "dtype": stored.get("dtype")}, stored):
        raise SourceCannotEncode(
            f"LASER's models in {found} are not the ones that computed the store's LASER "
            "vectors; nothing was encoded: pass --laser-dir DIR (in Python, set "
            "FEATSTORE_LASER_DIR=DIR) naming the models featurize read")
    encoders = [t.fingerprint for t in todos if t.kind == "encoder"] + \
        [e.fingerprint for e in store.manifest.encoders.values() if e.kind == "encoder"]
    # the pass runs an encoder too; one whose storage dtype is LASER's keeps both fingerprints
    match = next((fp for fp in encoders if fp.get("dtype") == stored.get("dtype")), None)
    if match is None:
        raise SourceCannotEncode("the store holds no encoder stored in LASER's dtype "
                                 f"({stored.get('dtype')}), which a LASER pass runs beside; "
                                 "featurize these texts with --laser and --dtype "
                                 f"{stored.get('dtype')}")
    return FeaturizeOptions.from_fingerprint(match, laser=True, laser_dir=str(found), wait=True)


def featurize_sources(store: Store, texts: Sequence[str],
                      needs: Sequence[tuple[dict, Sequence[str]]], progress: bool = False,
                      say: Say | None = None, laser_dir: str | None = None) -> int:
    """Encode those of `texts` each source (fingerprint, features) lacks; every refusal comes
    before any encoding. Returns how many distinct texts were encoded."""
    given = [t for t in dict.fromkeys(texts) if clean_text(t) is not None]
    if not given:
        return 0
    todos = [t for fp, feats in needs if (t := _lacking(store, given, fp, feats)) is not None]
    for todo in todos:
        if todo.kind not in ("encoder", "laser"):
            _refuse_imported(store, todo, len(given))
    laser = [(t, _laser_options(store, t, todos, laser_dir)) for t in todos if t.kind == "laser"]
    encoded: set[str] = set()
    for todo in todos:
        if todo.kind == "encoder":
            featurize_missing(store, todo.texts, todo.fingerprint, todo.features,
                              progress=progress, say=say)
            encoded.update(todo.texts)
    for todo, options in laser:
        opts = replace(options, tokens=False)
        featurize_texts(todo.texts, store.root, opts, progress=progress,
                        warn=say or (lambda _: None),
                        announce=f"encoding {len(todo.texts)} text(s) with LASER")
        store.refresh()
        encoded.update(todo.texts)
    return len(encoded)
