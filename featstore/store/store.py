"""Reading a store: encoders, datasets, and features gathered by key in any row order."""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from featstore.store.errors import DamagedShardError, StoreError
from featstore.store.featurizer_hook import installed_featurizer
from featstore.store.hashing import sha256_file
from featstore.store.keys import KEY_COLUMN, PAIR_KEY_COLUMNS, keys_for
from featstore.store.manifest import (
    EncoderEntry,
    Manifest,
    check_relpath,
    fingerprint_with_defaults,
    read_manifest,
)
from featstore.store.shards import ShardReader
from featstore.store.tables import read_table

if TYPE_CHECKING:  # pandas and pyarrow load on first table read: `featstore info` stays fast
    import pandas as pd

ENV_STORE = "FEATSTORE_DIR"
VECTOR = "vector"  # the one feature of a vector source (LASER, imported vectors)
# what makes two encoder fingerprints the same vectors, wherever the model's files lie
SAME_FILES = ("kind", "weights_sha256", "tokenizer_sha256", "max_length", "stride", "truncate",
              "dtype", "layers", "featurizer_version", "model_type", "hidden", "cls_position")


def default_store_path(path: str | os.PathLike | None = None) -> Path:
    """--store, else $FEATSTORE_DIR, else ./featstore."""
    return Path(path or os.environ.get(ENV_STORE) or "featstore")


def names_model(given: str, recorded: object) -> bool:
    """Whether `given` names the recorded model: the same text, or the same directory spelled
    another way (relative, absolute, with ./ or a trailing slash)."""
    if not isinstance(recorded, str):
        return False
    if given == recorded:
        return True
    try:
        mine, theirs = Path(given).expanduser(), Path(recorded).expanduser()
        return mine.is_dir() and theirs.is_dir() and mine.resolve() == theirs.resolve()
    except (OSError, ValueError):
        return False


@dataclass
class Damage:
    shards: dict[str, list[str]] = field(default_factory=dict)
    datasets: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Loc:
    shard: int
    row: int


class Store:
    """A read-only snapshot of a store, as of the manifest read at open (or `refresh`)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.manifest: Manifest = read_manifest(self.root)
        self._index: dict[tuple[str, str], dict[str, _Loc]] = {}

    # -- featurizing (forwarded to the featurizer the package installs) ------------------------
    def featurize(self, data: Any, name: str | None = None, *, text_col: str | None = None,
                  model: str | None = None, progress: bool = False, replace: bool = False,
                  **options: Any) -> dict[str, Any]:
        """Encode texts into this store: a corpus file (recorded as dataset `name`, default its
        stem), a DataFrame (recorded as dataset `name`), or a list of texts (recorded only when
        `name` is given). Only texts not stored yet are encoded; the handle is refreshed.
        `options` are `featstore.featurize.options.FeaturizeOptions` fields (`laser`,
        `compute_dtype`, `max_length`, ...). Returns the summary `featurize --json` prints."""
        summary = installed_featurizer().featurize_data(self, data, name, text_col, model,
                                                        progress, replace, options)
        self.refresh()
        return summary

    def featurize_missing(self, texts: Sequence[str], fingerprint: dict | None = None,
                          features: Sequence[str] = ("cls", "mean", "max"),
                          model: str | None = None, progress: bool = False) -> int:
        """Encode those of `texts` the store lacks (see `Featurizer.featurize_missing`); the
        handle is refreshed when anything was encoded. Returns how many were."""
        n = installed_featurizer().featurize_missing(self, texts, fingerprint, features, model,
                                                     progress)
        if n:
            self.refresh()
        return n

    def featurize_missing_pairs(self, pairs: Sequence[tuple[str, str]],
                                encoder_fingerprint: dict,
                                features: Sequence[str] = ("cls", "mean", "max"),
                                progress: bool = False) -> int:
        """Encode jointly those of `pairs` (two texts each, in order) that the cross source of
        the encoder with this fingerprint lacks, creating that source if need be; the handle is
        refreshed when anything was encoded. Returns how many pairs were."""
        n = installed_featurizer().featurize_missing_pairs(self, pairs, encoder_fingerprint,
                                                           features, progress)
        if n:
            self.refresh()
        return n

    def refresh(self) -> None:
        self.manifest = read_manifest(self.root)
        self._index.clear()

    # -- what is here -------------------------------------------------------------------------
    def sources(self) -> list[dict]:
        """Every vector source: encoders, LASER and imported vectors alike, with their rows."""
        return [
            {
                "id": enc_id,
                "fingerprint": e.fingerprint,
                "dtype": e.dtype,
                "features": sorted(e.feature_shapes),
                "rows": e.rows,
                "bytes": e.bytes,
                "shards": len(e.shards),
            }
            for enc_id, e in self.manifest.encoders.items()
        ]

    def has_encoder(self) -> bool:
        """Whether any source is a model's layers (not only LASER or imported vectors)."""
        return any(e.kind == "encoder" for e in self.manifest.encoders.values())

    def datasets(self) -> list[dict]:
        return [
            {"name": name, "rows": d.rows, "bytes": d.bytes, "source": d.source,
             "text_column": d.text_column, "encoders": list(d.encoders),
             "skipped": d.skipped, "updated": d.updated,
             **({"pair_columns": list(d.pair_columns)} if d.pair_columns else {})}
            for name, d in self.manifest.datasets.items()
        ]

    def rows_by_attr(self, encoder_id: str, name: str) -> dict[str, int]:
        """A source's rows (texts, as `rows` counts them) per value of a shard-wide fact
        (`compute_dtype`): from the manifest, else (shards committed before the manifest
        recorded it) from the shard file; `unrecorded` where neither has it, `unreadable`
        where the file cannot be read."""
        counts: dict[str, int] = {}
        entry = self.encoder_entry(encoder_id)
        main = entry.main_feature  # shards that only add a feature hold rows counted already
        for i, shard in enumerate(entry.shards):
            if main not in shard.features:
                continue
            value = shard.attrs.get(name)
            if value is None and not shard.attrs:
                try:
                    with self._reader(encoder_id, i) as reader:
                        value = reader.attr(name)
                except StoreError:
                    value = "unreadable"
            key = value or "unrecorded"
            counts[key] = counts.get(key, 0) + shard.rows
        return counts

    def encoder_entry(self, encoder_id: str) -> EncoderEntry:
        try:
            return self.manifest.encoders[encoder_id]
        except KeyError:
            raise StoreError(f"store {self.root} has no encoder {encoder_id!r}") from None

    def find_encoder(self, fingerprint: dict) -> str | None:
        """The id under which this store holds features of exactly this fingerprint, if any."""
        return self.manifest.find_encoder(fingerprint)

    def find_derived(self, kind: str, encoder_fingerprint: dict) -> str | None:
        """The id of a source of `kind` computed from the encoder with this fingerprint (a
        cross source's fingerprint holds its encoder's under `encoder`): the same weights,
        tokenizer and settings, wherever the model's files lie."""
        want = fingerprint_with_defaults(encoder_fingerprint)
        for enc_id, e in self.manifest.encoders.items():
            nested = e.fingerprint.get("encoder")
            if e.kind != kind or not isinstance(nested, dict):
                continue
            nested = fingerprint_with_defaults(nested)
            if all(nested.get(k) == want.get(k) for k in SAME_FILES):
                return enc_id
        return None

    def resolve_encoder(self, encoder: str | None = None, kind: str | None = None) -> str:
        """Encoder id from an id, a model name, or nothing (the only encoder of that kind)."""
        entries = self.manifest.encoders
        if kind is not None:
            entries = {k: e for k, e in entries.items() if e.kind == kind}
        if encoder is None:
            if len(entries) == 1:
                return next(iter(entries))
            if not entries:
                raise StoreError(f"store {self.root} holds no {kind or ''} encoder features yet; "
                                 f"run `featurize CORPUS --store {shlex.quote(str(self.root))}` "
                                 "first".replace("  ", " "))
            raise StoreError(f"store {self.root} holds several encoders ({', '.join(entries)}); "
                             "name one with --model")
        if encoder in self.manifest.encoders:
            return encoder
        matches = [k for k, e in entries.items()
                   if encoder == e.fingerprint.get("name")
                   or names_model(encoder, e.fingerprint.get("model"))]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise StoreError(f"store {self.root} has no encoder {encoder!r} "
                             f"(it has: {', '.join(self.manifest.encoders) or 'none'})")
        raise StoreError(f"model {encoder!r} matches several encoders ({', '.join(matches)}); "
                         "name one by id")

    def dataset(self, name: str) -> pd.DataFrame:
        """A featurized corpus: `_key` plus its columns, in file order."""
        entry = self.manifest.datasets.get(name)
        if entry is None:
            known = ", ".join(self.manifest.datasets) or "none"
            raise StoreError(f"store {self.root} has no dataset {name!r} (it has: {known})")
        path = check_relpath(entry.file, self.root)
        if not path.exists():
            raise self._gone(entry.file, "dataset table")
        return read_table(path, sha256=entry.sha256)

    # -- features -----------------------------------------------------------------------------
    def _reader(self, encoder_id: str, i: int) -> ShardReader:
        s = self.encoder_entry(encoder_id).shards[i]
        path = check_relpath(s.file, self.root)
        if not path.exists():
            raise self._gone(s.file, "shard")
        return ShardReader(path, expected_bytes=s.bytes)

    def _gone(self, rel: str, what: str) -> StoreError:
        """A file this snapshot names is gone: stale snapshot (the store moved on) or damage."""
        try:
            now = read_manifest(self.root).generation
        except StoreError:
            now = self.manifest.generation
        if now != self.manifest.generation:
            return StoreError(
                f"store {self.root} changed since this snapshot was read (generation "
                f"{self.manifest.generation} -> {now}): {what} {rel} is gone; "
                "call refresh() or open the store again")
        return DamagedShardError(f"{what} {rel} of store {self.root} is missing; "
                                 "run `featstore repair`")

    def index(self, encoder_id: str, feature: str) -> dict[str, _Loc]:
        """key -> location of the newest committed row holding `feature`."""
        cache_key = (encoder_id, feature)
        if cache_key not in self._index:
            idx: dict[str, _Loc] = {}
            for i, s in enumerate(self.encoder_entry(encoder_id).shards):
                if feature not in s.features:
                    continue
                with self._reader(encoder_id, i) as r:
                    keys = r.keys()
                if len(keys) != s.rows:
                    raise DamagedShardError(f"shard {s.file} holds {len(keys)} rows, manifest "
                                            f"says {s.rows}; run `featstore repair`")
                idx.update({k: _Loc(i, j) for j, k in enumerate(keys.tolist())})
            self._index[cache_key] = idx
        return self._index[cache_key]

    def has(self, encoder_id: str, keys: Sequence[str], features: Sequence[str]) -> np.ndarray:
        """Mask of keys whose features are all committed."""
        present = np.ones(len(keys), dtype=bool)
        for feat in features:
            idx = self.index(encoder_id, feat)
            present &= np.fromiter((k in idx for k in keys), dtype=bool, count=len(keys))
        return present

    def layer_positions(self, encoder_id: str, layers: int | Sequence[int] | None) -> list[int]:
        """Map model layer numbers (negative counts from the top) to stored positions."""
        stored = list(self.encoder_entry(encoder_id).fingerprint.get("layers", []))
        if layers is None:
            return list(range(len(stored)))
        out = []
        for layer in [layers] if isinstance(layers, int) else layers:
            if layer < 0 and -len(stored) <= layer:
                out.append(len(stored) + layer)
            elif layer in stored:
                out.append(stored.index(layer))
            else:
                raise StoreError(f"layer {layer} is not stored for encoder {encoder_id} "
                                 f"(stored layers: {stored}); re-run featurize with --layers all")
        return out

    def gather(
        self,
        encoder_id: str,
        keys: Sequence[str],
        feature: str,
        layers: int | Sequence[int] | None = None,
    ) -> np.ndarray:
        """Rows of `feature` for `keys`, in that order. Layered features come back
        [n, len(layers), hidden]; an int `layers` drops the layer axis."""
        entry = self.encoder_entry(encoder_id)
        if feature not in entry.feature_shapes:
            raise StoreError(f"feature {feature!r} is not stored for encoder {encoder_id} "
                             f"(stored: {', '.join(sorted(entry.feature_shapes))})")
        shape = entry.feature_shapes[feature]
        layered = len(shape) == 2
        pos = self.layer_positions(encoder_id, layers) if layered else None
        idx = self.index(encoder_id, feature)
        missing = [k for k in keys if k not in idx]
        if missing:
            raise StoreError(f"{len(missing)} of {len(keys)} texts have no {feature!r} features "
                             f"for encoder {encoder_id}; featurize them first")
        tail = [len(pos), shape[1]] if layered else shape
        out = np.empty((len(keys), *tail), dtype=np.dtype(entry.dtype))
        locs = [idx[k] for k in keys]
        shard_of = np.fromiter((loc.shard for loc in locs), dtype=np.int64, count=len(locs))
        row_of = np.fromiter((loc.row for loc in locs), dtype=np.int64, count=len(locs))
        for s in np.unique(shard_of):
            sel = np.nonzero(shard_of == s)[0]
            with self._reader(encoder_id, int(s)) as r:
                block = r.feature(feature, pos)
            shard = entry.shards[int(s)]
            if block.shape[1:] != tuple(tail) or len(block) != shard.rows:
                raise DamagedShardError(
                    f"shard {shard.file} holds {feature} rows of shape {list(block.shape)}, the "
                    f"manifest says {[shard.rows, *tail]}; run `featstore verify`")
            out[sel] = block[row_of[sel]]
        if layered and isinstance(layers, int):
            out = out[:, 0]
        return out

    def gather_meta(self, encoder_id: str, keys: Sequence[str], name: str,
                    feature: str = "cls") -> np.ndarray:
        idx = self.index(encoder_id, feature)
        out = np.empty(len(keys), dtype=np.int64)
        by_shard: dict[int, list[int]] = {}
        for i, k in enumerate(keys):
            by_shard.setdefault(idx[k].shard, []).append(i)
        for s, rows in by_shard.items():
            with self._reader(encoder_id, s) as r:
                m = r.meta(name)
            out[rows] = m[[idx[keys[i]].row for i in rows]]
        return out

    def gather_ragged(self, encoder_id: str, keys: Sequence[str], name: str) -> list[np.ndarray]:
        """Variable-length rows (e.g. token states), one array per key, in key order."""
        entry = self.encoder_entry(encoder_id)
        if name not in entry.feature_shapes:
            raise StoreError(f"encoder {encoder_id} has no {name!r} features; "
                             f"re-run featurize with --{name}")
        idx = self.index(encoder_id, name)
        missing = sum(k not in idx for k in keys)
        if missing:
            raise StoreError(f"{missing} of {len(keys)} texts have no {name!r} features for "
                             f"encoder {encoder_id}; re-run featurize with --{name}")
        out: list[np.ndarray] = [np.empty(0)] * len(keys)
        by_shard: dict[int, list[int]] = {}
        for i, k in enumerate(keys):
            by_shard.setdefault(idx[k].shard, []).append(i)
        for s, rows in by_shard.items():
            with self._reader(encoder_id, s) as r:
                data, offsets = r.ragged(name)
            for i in rows:
                j = idx[keys[i]].row
                out[i] = data[offsets[j]:offsets[j + 1]]
        return out

    def features(
        self,
        data: str | Sequence[str],
        kind: str = "cls",
        layers: int | Sequence[int] | None = -1,
        encoder: str | None = None,
        side: str | None = None,
    ) -> np.ndarray:
        """Features of a dataset (by name, in its row order) or of a list of texts; of a pair
        dataset, the first (`side="a"`) or second (`"b"`) texts' features, or the pairs' with
        `encoder` naming its cross source.

        `kind` is a stored feature (cls, mean, max, pooler, ...), the kind of another
        vector source such as "laser", or the name of imported vectors; vector sources come
        back [n, dim].
        """
        source, feature = self.feature_source(kind, encoder)
        if isinstance(data, str):
            table = self.dataset(data)
            column = KEY_COLUMN
            if self.manifest.datasets[data].pair_columns:
                joint = self.encoder_entry(source).kind == "cross"
                if side not in ("a", "b") and not joint:
                    raise StoreError(f"dataset {data!r} holds pairs: read the first or second "
                                     "texts with side='a' or side='b', or the pairs' joint "
                                     "encoding with encoder=<the cross source's id>")
                column = KEY_COLUMN if joint else PAIR_KEY_COLUMNS[side == "b"]
            keys = table[column].tolist()
        else:
            keys = keys_for(data)
        return self.gather(source, keys, feature, layers if feature != VECTOR else None)

    def feature_source(self, kind: str, encoder: str | None = None) -> tuple[str, str]:
        """(source id, stored feature) that `features(..., kind, encoder=...)` reads, by one
        rule: with `encoder`, that source (an encoder's feature `kind`, or a vector source's
        vectors); else a feature an encoder stores (cls, mean, ...) always means the
        encoder's, even where an older store holds vectors imported under that name; then a
        source kind (laser); then the name of imported vectors."""
        entries = self.manifest.encoders
        if encoder is not None:
            found = self.resolve_encoder(encoder)
            fp = entries[found].fingerprint
            if fp.get("kind") == "encoder":
                return found, kind
            if kind not in (VECTOR, fp.get("kind"), fp.get("name")):
                raise StoreError(f"source {found} holds vectors only; ask for kind={VECTOR!r} "
                                 f"(or {fp.get('name') or fp.get('kind')!r})")
            return found, VECTOR
        encoder_kind = {k: e for k, e in entries.items() if e.fingerprint.get("kind") == "encoder"}
        if any(kind in e.feature_shapes for e in encoder_kind.values()):
            return self.resolve_encoder(None, kind="encoder"), kind
        kinds = {e.fingerprint.get("kind") for e in entries.values()}
        if kind in kinds and kind != "encoder":
            return self.resolve_encoder(None, kind=kind), VECTOR
        named = [k for k, e in entries.items()
                 if e.fingerprint.get("kind") != "encoder" and e.fingerprint.get("name") == kind]
        if len(named) > 1:
            raise StoreError(f"several sources are named {kind!r} ({', '.join(named)}); name "
                             "one with encoder=ID")
        if named:
            return named[0], VECTOR
        return self.resolve_encoder(None, kind="encoder"), kind

    # -- integrity ---------------------------------------------------------------------------
    def check_shard(self, encoder_id: str, i: int) -> str | None:
        """What is wrong with one shard (existence, size, checksum, structure), or None."""
        s = self.encoder_entry(encoder_id).shards[i]
        try:
            path = check_relpath(s.file, self.root)
            if not path.exists():
                return f"shard {s.file} is missing"
            if path.stat().st_size != s.bytes:
                return f"shard {s.file} has {path.stat().st_size} bytes, expected {s.bytes}"
            if sha256_file(path) != s.sha256:
                try:
                    with self._reader(encoder_id, i) as r:
                        r.check_all()
                    where = "its bytes differ from the committed file"
                except StoreError as exc:
                    where = str(exc).split(" is damaged", 1)[-1].strip(" :;")
                    where = where.removesuffix("run `featstore repair`").strip(" :;")
                return f"shard {s.file} fails its checksum ({where})"
            entry = self.encoder_entry(encoder_id)
            with self._reader(encoder_id, i) as r:
                r.check_all()
                wrong = r.check_shapes(s.rows, entry.feature_shapes, entry.dtype, s.features)
                if wrong:
                    return f"shard {s.file} {wrong}"
        except StoreError as exc:
            return str(exc)
        return None

    def check_dataset(self, name: str) -> str | None:
        d = self.manifest.datasets[name]
        try:
            path = check_relpath(d.file, self.root)
        except StoreError as exc:
            return str(exc)
        if not path.exists():
            return f"table {d.file} is missing"
        if sha256_file(path) != d.sha256:
            return f"table {d.file} fails its checksum"
        return None

    def damaged(self) -> Damage:
        """Every damaged shard and table, with one line per problem."""
        damage = Damage()
        for enc_id, e in self.manifest.encoders.items():
            for i, s in enumerate(e.shards):
                problem = self.check_shard(enc_id, i)
                if problem:
                    damage.shards.setdefault(enc_id, []).append(s.file)
                    damage.problems.append(f"encoder {enc_id}: {problem}")
        for name in self.manifest.datasets:
            problem = self.check_dataset(name)
            if problem:
                damage.datasets.append(name)
                damage.problems.append(f"dataset {name}: {problem}")
        return damage

    def verify(self) -> list[str]:
        """Every problem found, one line each; empty when the store is sound."""
        return self.damaged().problems
