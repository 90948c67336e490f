"""Text keys: the identity of a text in the store, and the one rule for cleaning a text value.

A key is the 32-hex-digit BLAKE2b-128 digest of the normalised text's UTF-8 bytes. Normalisation
is Unicode NFC followed by stripping leading and trailing whitespace; nothing else (case and inner
whitespace are the tokenizer's business). The normalised text is also what the encoder sees, so a
key always names exactly one encoder input.
"""

from __future__ import annotations

import hashlib
import math
import unicodedata
from collections.abc import Iterable

KEY_WIDTH = 32
KEY_COLUMN = "_key"  # the key's column in every dataset table
# a pair dataset's table: `_key` is the pair's key, these the keys of its two texts, in order
PAIR_KEY_COLUMNS = ("_key_a", "_key_b")


def normalize_text(text: str) -> str:
    return unicodedata.normalize("NFC", text).strip()


def clean_text(value: object) -> str | None:
    """A cell of a text column as the encoder sees it, or None when it holds no text (missing,
    NaN, or only whitespace). Non-string scalars are read as their string form."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = normalize_text(value if isinstance(value, str) else str(value))
    return text or None


def text_key(text: str) -> str:
    """Key of an already normalised text."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def keys_for(texts: Iterable[str]) -> list[str]:
    """Keys of raw texts (normalised first)."""
    return [text_key(normalize_text(t)) for t in texts]


def pair_key(key_a: str, key_b: str) -> str:
    """Key of an ordered pair of texts: the BLAKE2b-128 digest of their two keys, first then
    second (64 ASCII hex digits). (a, b) and (b, a) are two pairs: a joint encoding sees the
    order."""
    return hashlib.blake2b((key_a + key_b).encode("ascii"), digest_size=16).hexdigest()
