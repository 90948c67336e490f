"""Reading a store: encoders, datasets, and features gathered by key in any row order."""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featstore.store.errors import DamagedIndexError, DamagedShardError, StoreError
from featstore.store.featurizer_hook import installed_featurizer
from featstore.store.hashing import sha256_file
from featstore.store.keys import KEY_COLUMN, PAIR_KEY_COLUMNS, keys_for
from featstore.store.location import default_store_path  # noqa: F401  (re-exported)
from featstore.store.manifest import (
    EncoderEntry,
    IndexEntry,
    Manifest,
    check_relpath,
    fingerprint_with_defaults,
    read_manifest,
    short_model_name,
)
from featstore.store.neighbors_hook import installed_searcher
from featstore.store.tables import read_columns, read_table

if TYPE_CHECKING:  # numpy, h5py, pandas and pyarrow load when rows or tables are read: a
    import numpy as np  # command that only reads the manifest (a refusal, `info`) starts fast
    import pandas as pd

    from featstore.store.shards import ShardReader

VECTOR = "vector"  # the one feature of a vector source (LASER, imported vectors)
# what makes two encoder fingerprints the same vectors, wherever the model's files lie
SAME_FILES = ("kind", "weights_sha256", "tokenizer_sha256", "max_length", "stride", "truncate",
              "dtype", "layers", "featurizer_version", "model_type", "hidden", "cls_position")


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


def stored_layers_text(stored: list[int]) -> str:
    """Which layers an encoder stores, and what to do about another one, in words that hold
    whether or not featurize was given --layers."""
    if stored and stored == list(range(stored[-1] + 1)):
        return (f"it stores layers 0 to {stored[-1]} (0: the embeddings; -1 counts from the "
                "top), every layer the model has unless featurize was given --layers; choose "
                "one of them")
    return (f"it stores only layers {stored}; choose one of them, or featurize again with "
            "--layers all to store every layer")


@dataclass(frozen=True)
class EncoderInfo:
    """An encoder of the store: `layers` are the stored hidden-state numbers (0: embeddings),
    `n_layers` their count, `width` the vectors' width, `rows` the texts it holds."""

    id: str
    model: str
    name: str
    layers: list[int]
    n_layers: int
    width: int
    features: list[str]
    rows: int


@dataclass
class Damage:
    shards: dict[str, list[str]] = field(default_factory=dict)
    datasets: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    indexes: list[str] = field(default_factory=list)


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

    def __repr__(self) -> str:
        parts = []
        for enc_id, e in self.manifest.encoders.items():
            fp = e.fingerprint
            if e.kind == "encoder":
                parts.append(f"encoder {short_model_name(fp.get('model'))} "
                             f"({len(fp.get('layers', []))} layers x {fp.get('hidden')}, "
                             f"{e.rows} texts, id {enc_id})")
            else:
                parts.append(f"{fp.get('name') or e.kind} ({fp.get('dim')} dims, {e.rows} texts)")
        sets = [f"{n} ({d.rows} rows)" for n, d in self.manifest.datasets.items()]
        return (f"<featstore.Store {str(self.root)!r}: " + ("; ".join(parts) or "no encoder")
                + "; datasets: " + (", ".join(sets) or "none") + ">")

    # -- the encoder's shape -------------------------------------------------------------------
    def encoder_info(self, encoder: str | None = None) -> EncoderInfo:
        """The encoder `encoder` names (its model name, path or id; default: the only one):
        its id, model, stored layer numbers, their count and the vectors' width."""
        enc_id = self.resolve_encoder(encoder, kind="encoder")
        e = self.encoder_entry(enc_id)
        layers = [int(x) for x in e.fingerprint.get("layers", [])]
        width = e.fingerprint.get("hidden") or next(
            (int(v[-1]) for v in e.feature_shapes.values() if v), 0)
        return EncoderInfo(enc_id, str(e.fingerprint.get("model")),
                           short_model_name(e.fingerprint.get("model")), layers, len(layers),
                           int(width), sorted(e.feature_shapes), e.rows)

    @property
    def n_layers(self) -> int:
        """How many hidden states the encoder stores per text (the embeddings and each layer:
        7 for all-MiniLM-L6-v2); with several encoders, `encoder_info(NAME).n_layers`."""
        return self.encoder_info().n_layers

    @property
    def width(self) -> int:
        """The width of the encoder's vectors (384 for all-MiniLM-L6-v2); with several
        encoders, `encoder_info(NAME).width`."""
        return self.encoder_info().width

    def encode(self, texts: str | Sequence[str], pool: str | None = None,
               layers: int | Sequence[int] | str | None = None, normalize: bool | None = None,
               encoder: str | None = None, progress: bool = False) -> np.ndarray:
        """float32 [n, dim] vectors of `texts` (one text: [dim]), as sentence-transformers'
        `encode` returns them, read from the store; texts it lacks are encoded first (and
        kept). `pool`: a fixed pooling (default: the model's sentence-transformers pooling,
        else mean); `layers`: a layer, a list (averaged) or "all" (default: the top layer);
        `normalize`: unit length (default: as the model's own `encode`); `encoder`: which of
        the store's encoders (a model the store lacks is featurized first)."""
        return installed_featurizer().encode(self, texts, pool, layers, normalize, encoder,
                                             progress)

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

    def featurize_sources(self, texts: Sequence[str],
                          needs: Sequence[tuple[dict, Sequence[str]]], progress: bool = False,
                          laser_dir: str | None = None) -> int:
        """Encode those of `texts` that each source lacks (sources as (fingerprint, features):
        encoders and LASER are run, imported vectors refused before anything is encoded); the
        handle is refreshed when anything was encoded. Returns how many texts were."""
        n = installed_featurizer().featurize_sources(self, texts, needs, progress, laser_dir)
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

    def neighbors(self, queries: str | Sequence[str], dataset: str, k: int = 10, *,
                  pool: str = "mean", layers: int | Sequence[int] | None = None,
                  of: str | None = None, layer_start: int | None = None,
                  encoder: str | None = None, method: str = "auto",
                  progress: bool = False) -> pd.DataFrame:
        """The `k` stored texts of `dataset` nearest each query by cosine, as a DataFrame: query,
        rank, score, text, row (the text's first row in the dataset) and that row's other
        columns. Queries the store lacks are featurized first with the encoder the layout reads
        (`pool`, `layers`, ... as for a head with a fixed pooling). `method`: "exact", "approx"
        (the index kept in the store) or "auto" (approx from 100,000 texts on)."""
        texts = [queries] if isinstance(queries, str) else list(queries)
        options = {"pool": pool, "layers": layers, "of": of, "layer_start": layer_start,
                   "encoder": encoder, "method": method, "progress": progress}
        return installed_searcher().neighbors(self, texts, dataset, k, options)

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
        if not matches:  # what people type: the model's short name, any case
            matches = [k for k, e in entries.items() if e.kind == "encoder" and
                       short_model_name(e.fingerprint.get("model")).lower() == encoder.lower()]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            held = ", ".join(self.source_names()) or "none"
            raise StoreError(f"store {self.root} has no encoder {encoder!r} (it has: {held})")
        raise StoreError(f"{encoder!r} matches several encoders ({', '.join(matches)}) of "
                         f"store {self.root}; name one by id")

    def source_names(self) -> list[str]:
        """Each source as people name it: `SHORT-NAME (id)` for a model's encoder, the name of
        imported vectors, `laser`."""
        out = []
        for enc_id, e in self.manifest.encoders.items():
            fp = e.fingerprint
            if e.kind == "encoder":
                out.append(f"{short_model_name(fp.get('model'))} ({enc_id})")
            else:
                out.append(str(fp.get("name") or e.kind))
        return out

    def _table_file(self, name: str) -> tuple[Path, str | None]:
        """A dataset's table file and its checksum; an unknown or vanished dataset refused."""
        entry = self.manifest.datasets.get(name)
        if entry is None:
            known = ", ".join(self.manifest.datasets) or "none"
            raise StoreError(f"store {self.root} has no dataset {name!r} (it has: {known})")
        path = check_relpath(entry.file, self.root)
        if not path.exists():
            raise self._gone(entry.file, "dataset table")
        return path, entry.sha256

    def dataset(self, name: str) -> pd.DataFrame:
        """A featurized corpus: `_key` plus its columns, in file order."""
        path, sha256 = self._table_file(name)
        return read_table(path, sha256=sha256)

    def dataset_columns(self, name: str) -> list[str]:
        """A dataset's column names (`_key` first), read from the table's schema alone."""
        path, sha256 = self._table_file(name)
        return read_columns(path, sha256=sha256)

    # -- features -----------------------------------------------------------------------------
    def _reader(self, encoder_id: str, i: int) -> ShardReader:
        from featstore.store.shards import ShardReader

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
        import numpy as np

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
                raise StoreError(f"layer {layer} is not stored for encoder {encoder_id}: "
                                 f"{stored_layers_text(stored)}")
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
        import numpy as np

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
        import numpy as np

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
        import numpy as np


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
        layers: int | Sequence[int] | str | None = -1,
        encoder: str | None = None,
        dtype: Any = "float32",
        side: str | None = None,
    ) -> np.ndarray:
        """Features of a dataset (by name, in its row order) or of a list of texts, as float32
        (what scikit-learn computes in; `dtype="float16"` or None keeps the stored precision);
        of a pair dataset, the first (`side="a"`) or second (`"b"`) texts' features, or the
        pairs' with `encoder` naming its cross source.

        `kind` is a stored feature (cls, mean, max, pooler, ...), the kind of another
        vector source such as "laser", or the name of imported vectors; vector sources come
        back [n, dim]. `layers`: a layer number ([n, dim]; negative counts from the top), a
        list of them ([n, len(layers), dim]), or "all" / None (every stored layer).
        """
        import numpy as np

        if isinstance(layers, str):
            if layers != "all":
                raise StoreError(f"layers={layers!r}: give 'all', a layer number or a list of "
                                 "layer numbers")
            layers = None
        out_dtype = None if dtype is None else np.dtype(dtype)
        if out_dtype is not None and out_dtype.kind != "f":
            raise StoreError(f"dtype={dtype!r}: features are floating point; give float32, "
                             "float16 or float64 (None keeps the stored precision)")
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
        out = self.gather(source, keys, feature, layers if feature != VECTOR else None)
        return out if out_dtype is None else out.astype(out_dtype, copy=False)

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

    # -- search indexes (derived artifacts) ---------------------------------------------------
    def indexes(self) -> list[dict]:
        """Every committed search index: its id, dataset, source, rows, kind and size."""
        return [{"id": name, "dataset": e.dataset, "source": e.source, "rows": e.rows,
                 "kind": e.kind, "bytes": e.bytes, "created": e.created}
                for name, e in self.manifest.indexes.items()]

    def index_entry(self, index_id: str) -> IndexEntry | None:
        return self.manifest.indexes.get(index_id)

    def read_index(self, index_id: str) -> tuple[list[str], np.ndarray, dict[str, str]]:
        """(keys, blob, attributes) of a committed index; damage (a missing, linked, resized or
        flipped file) is a DamagedIndexError naming it, never bytes handed on."""
        from featstore.store.index_files import read_index_file  # h5py: when an index is read

        entry = self.manifest.indexes[index_id]
        try:
            path = check_relpath(entry.file, self.root)
        except StoreError as exc:
            raise DamagedIndexError(f"index {index_id}: {exc}; run `featstore repair`") from None
        return read_index_file(path, entry.bytes, f"index {index_id}")

    def check_index(self, index_id: str) -> str | None:
        """What is wrong with one index (its file, its checksums, what it belongs to), or
        None."""
        from featstore.store.index_files import read_index_file

        e = self.manifest.indexes[index_id]
        if e.dataset not in self.manifest.datasets:
            return f"index {e.file} belongs to dataset {e.dataset}, which the store no longer holds"
        if e.source not in self.manifest.encoders:
            return f"index {e.file} belongs to source {e.source}, which the store no longer holds"
        try:
            path = check_relpath(e.file, self.root)
            if path.is_file() and not path.is_symlink() and path.stat().st_size == e.bytes \
                    and sha256_file(path) != e.sha256:
                return f"index {e.file} fails its checksum"
            keys, _, _ = read_index_file(path, e.bytes, "index")
        except StoreError as exc:
            return str(exc).split("; run `featstore repair`", 1)[0]
        if len(keys) != e.rows:
            return f"index {e.file} holds {len(keys)} rows, the manifest says {e.rows}"
        return None

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
        for name in self.manifest.indexes:
            problem = self.check_index(name)
            if problem:
                damage.indexes.append(name)
                damage.problems.append(f"index {name}: {problem}")
        return damage

    def verify(self) -> list[str]:
        """Every problem found, one line each; empty when the store is sound."""
        return self.damaged().problems
