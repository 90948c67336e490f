"""The manifest: the single commit point of a store.

Everything a reader may use is named here; a file the manifest does not name does not exist as far
as readers are concerned. Replacing the manifest atomically is what commits a write.

The manifest carries a SHA-256 of its own canonical JSON (`checksum`), so a flipped byte in it is
refused instead of quietly changing a dtype, a shape or a layer list; manifests written without
one are still read. Its fields are also checked for type and consistency.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

from featstore.store.errors import FormatVersionError, StoreError
from featstore.store.hashing import sha256_json
from featstore.store.safe_paths import check_no_links

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# Fields added to fingerprints after stores already held some, by fingerprint kind, with the
# value every fingerprint written before them implied: an older fingerprint still matches.
FINGERPRINT_DEFAULTS = {"encoder": {"featurizer_version": 1}}


def fingerprint_with_defaults(fingerprint: dict) -> dict:
    defaults = FINGERPRINT_DEFAULTS.get(fingerprint.get("kind"), {})
    return {**defaults, **fingerprint}


def fingerprints_match(a: dict, b: dict) -> bool:
    """Same producer and settings, allowing for fields added since one of them was written."""
    return fingerprint_with_defaults(a) == fingerprint_with_defaults(b)


def check_name(name: str, what: str) -> str:
    """Names become path components: refuse separators, traversal, and oddities."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or name in {".", ".."}:
        raise StoreError(
            f"invalid {what} name {name!r}: use letters, digits, '.', '_' or '-' "
            "(no path separators), starting with a letter or digit, at most 128 characters"
        )
    return name


def check_relpath(rel: str, root: Path) -> Path:
    """The path a manifest names, refused if it would leave the store or pass a symbolic
    link (a store holds none)."""
    p = PurePosixPath(rel)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise StoreError(f"manifest names a path outside the store: {rel!r}")
    full = root / Path(*p.parts)
    try:
        check_no_links(root, full)
    except StoreError:
        raise StoreError(f"manifest names a path outside the store: {rel!r} (through a "
                         "symbolic link)") from None
    return full


@dataclass
class ShardEntry:
    file: str
    rows: int
    bytes: int
    sha256: str
    features: list[str]
    # shard-wide facts the writer recorded (also HDF5 attributes of the shard), such as the
    # precision its vectors were computed in; entries written before it existed have none
    attrs: dict[str, str] = field(default_factory=dict)


@dataclass
class EncoderEntry:
    fingerprint: dict
    dtype: str
    feature_shapes: dict[str, list[int]]
    shards: list[ShardEntry] = field(default_factory=list)
    created: str = ""

    @property
    def kind(self) -> str:
        """What made the vectors: "encoder" (a model's layers), "laser", or "vectors"
        (imported with import-vectors); the manifest names them all encoders."""
        return str(self.fingerprint.get("kind"))

    @property
    def rows(self) -> int:
        """Texts it holds vectors of: a later pass that only adds a feature (token states)
        writes shards of rows already counted, so rows are counted per feature."""
        per_feature: dict[str, int] = {}
        for s in self.shards:
            for f in s.features:
                per_feature[f] = per_feature.get(f, 0) + s.rows
        return max(per_feature.values(), default=0)

    @property
    def main_feature(self) -> str | None:
        """The feature held for the most texts (ties: the first in sorted order)."""
        per_feature: dict[str, int] = {}
        for s in self.shards:
            for f in s.features:
                per_feature[f] = per_feature.get(f, 0) + s.rows
        return max(sorted(per_feature), key=lambda f: per_feature[f], default=None)

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self.shards)


@dataclass
class DatasetEntry:
    file: str
    rows: int
    bytes: int
    sha256: str
    text_column: str
    source: str
    encoders: list[str] = field(default_factory=list)
    skipped: int = 0
    updated: str = ""
    # a pair dataset: the two columns whose texts make each row's pair (written only when set)
    pair_columns: list[str] = field(default_factory=list)


@dataclass
class IndexEntry:
    """A derived artifact: a search index over one dataset's vectors of one source. It can
    always be made again from the shards and the table, so `repair` may drop it; `meta` is
    what its builder needs to tell whether it still matches them (opaque to the store)."""

    file: str
    bytes: int
    sha256: str
    dataset: str
    source: str
    rows: int
    kind: str
    meta: dict = field(default_factory=dict)
    created: str = ""


@dataclass
class Manifest:
    format_version: int = FORMAT_VERSION
    generation: int = 0
    encoders: dict[str, EncoderEntry] = field(default_factory=dict)
    datasets: dict[str, DatasetEntry] = field(default_factory=dict)
    # written only when not empty, so a store without indexes reads as it always did
    indexes: dict[str, IndexEntry] = field(default_factory=dict)

    def find_encoder(self, fingerprint: dict) -> str | None:
        """The id of the encoder (or other source) with this fingerprint, if any."""
        for enc_id, entry in self.encoders.items():
            if fingerprints_match(entry.fingerprint, fingerprint):
                return enc_id
        return None

    def to_json(self) -> dict:
        data = asdict(self)
        if not data["indexes"]:
            del data["indexes"]
        for d in data["datasets"].values():
            if not d["pair_columns"]:
                del d["pair_columns"]  # a text dataset's entry reads as it always did
        data["checksum"] = manifest_checksum(data)
        return data

    @classmethod
    def from_json(cls, data: dict, where: Path) -> Manifest:
        version = data.get("format_version") if isinstance(data, dict) else None
        if version != FORMAT_VERSION:
            raise FormatVersionError(
                f"store {where} uses format version {version!r}; "
                f"this featstore reads version {FORMAT_VERSION}"
            )
        unknown = set(data) - {"format_version", "generation", "encoders", "datasets",
                               "indexes", "checksum"}
        if unknown:
            raise StoreError(f"manifest of store {where} is malformed (unknown field(s) "
                             f"{', '.join(sorted(unknown))})")
        if "checksum" in data and data["checksum"] != manifest_checksum(data):
            raise StoreError(f"manifest of store {where} fails its checksum (damaged or edited "
                             "by hand); restore it from a backup")
        try:
            encoders = {}
            for enc_id, e in data["encoders"].items():
                check_name(enc_id, "encoder")
                shards = [ShardEntry(**s) for s in e["shards"]]
                encoders[enc_id] = EncoderEntry(
                    fingerprint=e["fingerprint"],
                    dtype=e["dtype"],
                    feature_shapes={k: list(v) for k, v in e["feature_shapes"].items()},
                    shards=shards,
                    created=e.get("created", ""),
                )
                _check_encoder(enc_id, encoders[enc_id])
            datasets = {}
            for name, d in data["datasets"].items():
                check_name(name, "dataset")
                datasets[name] = DatasetEntry(**d)
                _check_dataset(name, datasets[name])
            indexes = {}
            for name, d in data.get("indexes", {}).items():
                check_name(name, "index")
                indexes[name] = IndexEntry(**d)
                _check_index(name, indexes[name])
            return cls(
                format_version=version,
                generation=int(data["generation"]),
                encoders=encoders,
                datasets=datasets,
                indexes=indexes,
            )
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise StoreError(f"manifest of store {where} is malformed ({exc})") from None


def manifest_checksum(data: dict) -> str:
    """SHA-256 of the manifest's canonical JSON, without its own checksum field."""
    return sha256_json({k: v for k, v in data.items() if k != "checksum"})


def _check_encoder(enc_id: str, e: EncoderEntry) -> None:
    """Types and consistency a reader relies on; raises ValueError (reported as malformed)."""
    if e.dtype not in ("float16", "float32"):
        raise ValueError(f"encoder {enc_id} has dtype {e.dtype!r}")
    for name, shape in e.feature_shapes.items():
        if not shape or not all(isinstance(d, int) and d > 0 for d in shape):
            raise ValueError(f"encoder {enc_id} feature {name} has shape {shape!r}")
    layers = e.fingerprint.get("layers") if isinstance(e.fingerprint, dict) else None
    if not isinstance(e.fingerprint, dict) or not isinstance(e.fingerprint.get("kind"), str):
        raise ValueError(f"encoder {enc_id} has no fingerprint kind")
    layered = any(len(s) == 2 for s in e.feature_shapes.values())
    if layered and (not isinstance(layers, list)
                    or not all(isinstance(x, int) for x in layers)
                    or any(len(s) == 2 and s[0] != len(layers)
                           for s in e.feature_shapes.values())):
        raise ValueError(f"encoder {enc_id} layers {layers!r} do not match its feature shapes")
    for sh in e.shards:
        if not (isinstance(sh.rows, int) and sh.rows >= 0 and isinstance(sh.bytes, int)
                and isinstance(sh.file, str) and isinstance(sh.sha256, str)
                and set(sh.features) <= set(e.feature_shapes)
                and isinstance(sh.attrs, dict)
                and all(isinstance(k, str) and isinstance(v, str) for k, v in sh.attrs.items())):
            raise ValueError(f"encoder {enc_id} shard entry {sh.file!r} is inconsistent")


def _check_dataset(name: str, d: DatasetEntry) -> None:
    """Types a reader relies on; raises ValueError (reported as malformed)."""
    ints = (d.rows, d.bytes, d.skipped)
    texts = (d.file, d.sha256, d.text_column, d.source, d.updated)
    if not (all(isinstance(x, int) and x >= 0 for x in ints)
            and all(isinstance(x, str) for x in texts)
            and isinstance(d.encoders, list) and all(isinstance(x, str) for x in d.encoders)
            and isinstance(d.pair_columns, list) and len(d.pair_columns) in (0, 2)
            and all(isinstance(x, str) for x in d.pair_columns)):
        raise ValueError(f"dataset {name} entry is inconsistent")


def _check_index(name: str, d: IndexEntry) -> None:
    """Types a reader relies on; raises ValueError (reported as malformed)."""
    texts = (d.file, d.sha256, d.dataset, d.source, d.kind, d.created)
    if not (all(isinstance(x, int) and x >= 0 for x in (d.bytes, d.rows))
            and all(isinstance(x, str) for x in texts) and isinstance(d.meta, dict)):
        raise ValueError(f"index {name} entry is inconsistent")


def read_manifest(root: Path) -> Manifest:
    path = check_no_links(root, root / MANIFEST_NAME)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise StoreError(f"no featstore store at {root} (missing {MANIFEST_NAME})") from None
    except IsADirectoryError:
        raise StoreError(f"manifest of store {root} is a directory, not a file (damaged); "
                         "restore it from a backup") from None
    except OSError as exc:
        raise StoreError(f"manifest of store {root} cannot be read ({exc.strerror})") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise StoreError(f"manifest of store {root} is not valid UTF-8 (damaged); restore it "
                         "from a backup") from None
    except json.JSONDecodeError as exc:
        raise StoreError(f"manifest of store {root} is not valid JSON ({exc}); restore it from "
                         "a backup") from None
    if not isinstance(data, dict):
        raise StoreError(f"manifest of store {root} is malformed (not a JSON object)")
    return Manifest.from_json(data, root)


def short_model_name(model: object) -> str:
    """What people call a model: the last part of its hub id or directory path
    (`all-MiniLM-L6-v2` for `sentence-transformers/all-MiniLM-L6-v2` or `/m/all-MiniLM-L6-v2/`)."""
    text = str(model or "").rstrip("/\\")
    return text.replace("\\", "/").rsplit("/", 1)[-1] or text
