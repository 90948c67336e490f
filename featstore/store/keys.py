"""Text keys: the identity of a text in the store.

A key is the 32-hex-digit BLAKE2b-128 digest of the normalised text's UTF-8 bytes. Normalisation
is Unicode NFC followed by stripping leading and trailing whitespace; nothing else (case and inner
whitespace are the tokenizer's business). The normalised text is also what the encoder sees, so a
key always names exactly one encoder input.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Iterable

KEY_WIDTH = 32


def normalize_text(text: str) -> str:
    return unicodedata.normalize("NFC", text).strip()


def text_key(text: str) -> str:
    """Key of an already normalised text."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def keys_for(texts: Iterable[str]) -> list[str]:
    """Keys of raw texts (normalised first)."""
    return [text_key(normalize_text(t)) for t in texts]
