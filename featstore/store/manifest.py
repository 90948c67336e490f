"""The manifest: the single commit point of a store.

Everything a reader may use is named here; a file the manifest does not name does not exist as far
as readers are concerned. Replacing the manifest atomically is what commits a write.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

from featstore.store.errors import FormatVersionError, StoreError

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_name(name: str, what: str) -> str:
    """Names become path components: refuse separators, traversal, and oddities."""
    if not isinstance(name, str) or not _NAME_RE.match(name) or name in {".", ".."}:
        raise StoreError(
            f"invalid {what} name {name!r}: use letters, digits, '.', '_' or '-' "
            "(no path separators), starting with a letter or digit, at most 128 characters"
        )
    return name


def check_relpath(rel: str, root: Path) -> Path:
    """Resolve a manifest path, refusing anything that would leave the store."""
    p = PurePosixPath(rel)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise StoreError(f"manifest names a path outside the store: {rel!r}")
    full = (root / Path(*p.parts)).resolve()
    if not full.is_relative_to(root.resolve()):
        raise StoreError(f"manifest names a path outside the store: {rel!r}")
    return full


@dataclass
class ShardEntry:
    file: str
    rows: int
    bytes: int
    sha256: str
    features: list[str]


@dataclass
class EncoderEntry:
    fingerprint: dict
    dtype: str
    feature_shapes: dict[str, list[int]]
    shards: list[ShardEntry] = field(default_factory=list)
    created: str = ""

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.shards)

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


@dataclass
class Manifest:
    format_version: int = FORMAT_VERSION
    generation: int = 0
    encoders: dict[str, EncoderEntry] = field(default_factory=dict)
    datasets: dict[str, DatasetEntry] = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict, where: Path) -> Manifest:
        version = data.get("format_version") if isinstance(data, dict) else None
        if version != FORMAT_VERSION:
            raise FormatVersionError(
                f"store {where} uses format version {version!r}; "
                f"this featstore reads version {FORMAT_VERSION}"
            )
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
            datasets = {}
            for name, d in data["datasets"].items():
                check_name(name, "dataset")
                datasets[name] = DatasetEntry(**d)
            return cls(
                format_version=version,
                generation=int(data["generation"]),
                encoders=encoders,
                datasets=datasets,
            )
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise StoreError(f"manifest of store {where} is malformed ({exc})") from None


def read_manifest(root: Path) -> Manifest:
    path = root / MANIFEST_NAME
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StoreError(f"no featstore store at {root} (missing {MANIFEST_NAME})") from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise StoreError(f"manifest of store {root} is not valid JSON ({exc})") from None
    return Manifest.from_json(data, root)
