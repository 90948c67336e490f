"""A sentence-transformers model directory's own settings, read without sentence-transformers:
the sequence length it was trained for (`sentence_bert_config.json`), its pooling
(`1_Pooling/config.json`) and whether its vectors are normalised (a `Normalize` module in
`modules.json`). featurize windows texts at that length by default, and `encode` pools and
normalises as the model's own `encode` does."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

# sentence-transformers pooling modes -> featstore's fixed poolings of the stored rows (where
# several are joined, sentence-transformers puts max before mean: the same numbers, reordered)
_POOLINGS = {("cls",): "cls", ("mean",): "mean", ("max",): "max", ("max", "mean"): "mean-max",
             ("cls", "mean"): "cls-mean"}
_MODES = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean",
          "pooling_mode_max_tokens": "max"}
_OTHER_MODES = ("pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens",
                "pooling_mode_lasttoken")


@dataclass(frozen=True)
class SentenceTransformersConfig:
    """What a sentence-transformers directory says; None where it says nothing featstore can
    use (`pooling` None: a mode the stored rows cannot give, such as weighted mean)."""

    max_seq_length: int | None
    pooling: str | None
    normalize: bool


def _json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def read_st_config(directory: str | Path) -> SentenceTransformersConfig | None:
    """The settings of a sentence-transformers model directory, or None for a plain Hugging
    Face directory (no `sentence_bert_config.json` and no `modules.json`)."""
    root = Path(directory)
    sbert, modules = _json(root / "sentence_bert_config.json"), _json(root / "modules.json")
    if sbert is None and modules is None:
        return None
    length = sbert.get("max_seq_length") if isinstance(sbert, dict) else None
    max_seq_length = int(length) if isinstance(length, int) and length > 0 else None
    pooling, normalize = None, False
    for module in modules if isinstance(modules, list) else []:
        kind = str(module.get("type", "")) if isinstance(module, dict) else ""
        if kind.endswith(".Normalize"):
            normalize = True
        elif kind.endswith(".Pooling"):
            pooling = _pooling(root / str(module.get("path", "")) / "config.json")
    if modules is None and (root / "1_Pooling" / "config.json").is_file():
        pooling = _pooling(root / "1_Pooling" / "config.json")
    return SentenceTransformersConfig(max_seq_length, pooling, normalize)


def _pooling(path: Path) -> str | None:
    config = _json(path)
    if not isinstance(config, dict):
        return None
    if any(config.get(k) for k in _OTHER_MODES):
        return None
    modes = tuple(sorted(v for k, v in _MODES.items() if config.get(k)))
    return _POOLINGS.get(modes)
