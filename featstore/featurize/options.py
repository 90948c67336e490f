"""What shapes a featurize pass, as one plain dataclass (no torch: the CLI builds it cheaply)."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass
class FeaturizeOptions:
    """Everything that shapes a featurize pass; the encoder-defining part is its fingerprint."""

    model: str | None = None
    max_length: int | None = None
    stride: int | None = None
    truncate: bool = False
    layers: str | list[int] = "all"
    features: tuple[str, ...] | None = None  # None: cls, mean, max, and pooler if the model has one
    tokens: bool = False
    cross: bool = False  # pairs only: also encode each pair jointly, as a source of its own
    laser: bool | None = None  # None: when LASER's models are found, silently off if not
    laser_dir: str | None = None
    device: str = "auto"
    batch_tokens: int | None = None
    dtype: str = "float16"
    compute_dtype: str = "auto"
    runtime: str = "auto"  # torch, openvino, or auto: OpenVINO where it serves the model
    strict: bool = False
    trust_remote_code: bool = False
    wait: bool = False
    shard_rows: int = 2048
    chunk_rows: int = 16384
    engine: str = "local"  # or "ray": featstore.featurize.ray_engine
    address: str | None = None  # Ray cluster address (None: $RAY_ADDRESS or a local cluster)
    workers: int | None = None  # Ray actors (None: one per GPU, or per CPU, of the cluster)
    gpus_per_worker: float = 0.0
    # The fingerprint this pass must reproduce (the store's encoder, a head's): a pass whose
    # model files now hold other weights is refused before anything is written.
    expect: dict | None = None

    @classmethod
    def from_fingerprint(cls, fp: dict, **overrides: object) -> FeaturizeOptions:
        """Options that reproduce the encoder of an existing fingerprint (and refuse to
        featurize with anything else)."""
        opts = cls(model=fp["model"], max_length=fp["max_length"], stride=fp["stride"],
                   truncate=fp["truncate"], layers=list(fp["layers"]), dtype=fp["dtype"],
                   laser=False, expect=fp)
        return replace(opts, **overrides)
