"""Which source of a store a `--fuse` name means (LASER, imported vectors by name, another encoder
by model name or id), and the featurize flags that give an encoder again, for advice that works
as written. Reads the manifest only (no numpy), so the command line checks `--fuse` at once."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from featstore.heads.errors import HeadError, ParamError, literal
from featstore.store import Store, StoreError

FUSE_FEATURE = "vector"  # what vector-only sources (LASER) store per text


@dataclass(frozen=True)
class FusionSource:
    """A fusion source resolved in a store: its name as given, encoder id, and feature."""

    name: str
    encoder_id: str
    feature: str
    layer: int | None  # model layer number for layered features, None for vectors


def encoder_layers(store: Store, encoder_id: str) -> list[int]:
    return [int(i) for i in store.encoder_entry(encoder_id).fingerprint.get("layers", [])]


def resolve_source(store: Store, name: str) -> FusionSource:
    """`laser` (or any vector kind) -> that kind's encoder; else a source by name (vectors
    imported by `import-vectors`), model or id: its vectors, or an encoder's top-layer mean."""
    kinds = {e.kind for e in store.manifest.encoders.values()}
    if name == "laser" and "laser" not in kinds:
        encoders = [e.fingerprint for e in store.manifest.encoders.values()
                    if e.fingerprint.get("kind") == "encoder"]
        flags = f" {shlex.join(['--store', str(store.root), *featurize_flags(encoders[0])])}" \
            if len(encoders) == 1 else f" --store {shlex.quote(str(store.root))}"
        raise HeadError(f"the store holds no LASER vectors; run `featurize --laser CORPUS{flags}` "
                        "on the corpus (LASER models come from `python -m laserembeddings "
                        "download-models`)")
    if name in kinds and name != "encoder":
        return FusionSource(name, store.resolve_encoder(None, kind=name), FUSE_FEATURE, None)
    try:
        enc = store.resolve_encoder(name)
    except StoreError as exc:  # say it is about --fuse
        raise ParamError(f"{{fuse}} {literal(name)}: {literal(str(exc))}; vectors made "
                         "elsewhere are added with `featstore import-vectors --name NAME FILE`"
                         ) from None
    entry = store.encoder_entry(enc)
    if FUSE_FEATURE in entry.feature_shapes:
        return FusionSource(name, enc, FUSE_FEATURE, None)
    layers = encoder_layers(store, enc)
    return FusionSource(name, enc, "mean", layers[-1] if layers else None)


def featurize_flags(fingerprint: dict) -> list[str]:
    """The featurize flags that give an encoder's fingerprint again (model and settings), so
    advice naming them works as written."""
    fp = fingerprint
    if fp.get("kind") != "encoder" or "max_length" not in fp:
        return ["--model", str(fp.get("model", "?"))]
    words = ["--model", str(fp.get("model")), "--max-length", str(fp.get("max_length")),
             "--layers", ",".join(map(str, fp.get("layers", [])))]
    words += ["--truncate"] if fp.get("truncate") else ["--stride", str(fp.get("stride"))]
    if fp.get("dtype") == "float32":
        words += ["--dtype", "float32"]
    return words
