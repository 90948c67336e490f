"""What a model's files say about pairs, importable without torch: the tokenizer's pair encoding
as a template (refused when the model cannot tell two texts apart), and how many logits a
sequence-classification checkpoint gives. A pass asking for `--cross` learns these before it
writes anything, from the loaded encoder or from the tokenizer and config alone."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from featstore.featurize.errors import EncoderError
from featstore.featurize.model_names import resolve_model

if TYPE_CHECKING:
    from featstore.featurize.encoder import Encoder

# Bumped whenever the code changes the values stored for the same pairs and model (the windows,
# the template): part of every cross source's fingerprint.
CROSS_VERSION = 1
LOGITS = "logits"
_PROBES = (("a", "b"), ("good morning", "new bank card"))


@dataclass(frozen=True)
class PairTemplate:
    """The special tokens around and between two texts, and the token type of each part:
    `types` for (prefix, first text, middle, second text, suffix)."""

    prefix: tuple[int, ...]
    middle: tuple[int, ...]
    suffix: tuple[int, ...]
    types: tuple[int, int, int, int, int]

    @property
    def specials(self) -> int:
        return len(self.prefix) + len(self.middle) + len(self.suffix)

    def build(self, a: Sequence[int], b: Sequence[int]) -> tuple[list[int], list[int]]:
        """Input ids and token type ids of the pair (a, b) of token ids (no specials)."""
        parts = (self.prefix, a, self.middle, b, self.suffix)
        ids = [i for p in parts for i in p]
        types = [t for p, t in zip(parts, self.types, strict=True) for _ in p]
        return ids, types


def _find(seq: list[int], part: list[int], start: int) -> int:
    for i in range(start, len(seq) - len(part) + 1):
        if seq[i:i + len(part)] == part:
            return i
    return -1


def _split_pair(tokenizer: object, a: str, b: str) -> PairTemplate | None:
    enc = tokenizer(a, b, return_token_type_ids=True)  # type: ignore[operator]
    ids = list(enc["input_ids"])
    # token types count only where the model is given them
    fed = "token_type_ids" in getattr(tokenizer, "model_input_names", ())
    types = list(enc.get("token_type_ids") or []) if fed else []
    types = types or [0] * len(ids)
    ia = list(tokenizer(a, add_special_tokens=False)["input_ids"])  # type: ignore[operator]
    ib = list(tokenizer(b, add_special_tokens=False)["input_ids"])  # type: ignore[operator]
    i = _find(ids, ia, 0)
    j = _find(ids, ib, i + len(ia)) if i >= 0 else -1
    if i < 0 or j < 0 or not ia or not ib:
        return None
    spans = ((0, i), (i, i + len(ia)), (i + len(ia), j), (j, j + len(ib)), (j + len(ib), len(ids)))
    part_types = []
    for lo, hi in spans:
        kinds = set(types[lo:hi])
        if len(kinds) > 1:
            return None
        part_types.append(kinds.pop() if kinds else 0)
    return PairTemplate(tuple(ids[:i]), tuple(ids[i + len(ia):j]), tuple(ids[j + len(ib):]),
                        tuple(part_types))  # type: ignore[arg-type]


def pair_template(tokenizer: object, name: str) -> PairTemplate:
    """The tokenizer's pair encoding as a template, refused in one line when the model cannot
    tell two texts apart (nothing between them: a decoder's tokenizer simply joins them) or
    when its pair encoding is not a fixed template."""
    found = [_split_pair(tokenizer, a, b) for a, b in _PROBES]
    if any(t is None for t in found) or len(set(found)) != 1:
        raise EncoderError(f"model {name} cannot encode pairs jointly: its tokenizer's pair "
                           "encoding is not a fixed template; featurize --pair-cols without "
                           "--cross")
    template = found[0]
    if template is None or (not template.middle and template.types[1] == template.types[3]):
        raise EncoderError(f"model {name} cannot encode pairs jointly: its tokenizer puts "
                           "nothing between two texts (no separator, no token types); "
                           "featurize --pair-cols without --cross")
    return template


def classifier_labels(config: object) -> int:
    """How many logits a sequence-classification model gives (0: not such a model)."""
    archs = getattr(config, "architectures", None) or []
    if any(str(a).endswith("ForSequenceClassification") for a in archs):
        return int(getattr(config, "num_labels", 0) or 0)
    return 0


def pair_facts(model: str | None, trust_remote_code: bool, encoder: Encoder | None,
               cached: dict[str, Any] | None) -> dict[str, Any]:
    """{"logits": n} for a model that can encode pairs (n: its classifier's labels, 0 for a
    plain encoder); refused in one line otherwise. From the cache, else the loaded encoder,
    else the model's tokenizer and config (no weights)."""
    if cached is not None and isinstance(cached.get("logits"), int):
        return cached
    if encoder is not None:
        tokenizer, config, name = encoder.tokenizer, encoder.config, encoder.name
    else:
        from transformers import AutoConfig, AutoTokenizer

        name, source = resolve_model(model)
        try:
            config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
            tokenizer = AutoTokenizer.from_pretrained(source,
                                                      trust_remote_code=trust_remote_code)
        except (OSError, ValueError, KeyError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EncoderError(f"cannot load model {name!r}: {first}") from None
    pair_template(tokenizer, name)
    return {"logits": classifier_labels(config)}
