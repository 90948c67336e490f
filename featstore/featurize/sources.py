"""The vector sources a pass computes (the encoder, LASER): loading them, and what the store must
know of each (fingerprint, dtype, feature shapes) to find, register and check their features."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from featstore.featurize.encoder import LAYERED_FEATURES, Encoder
from featstore.featurize.errors import EncoderError
from featstore.featurize.laser import MISSING_LASER_HINT, LaserVectors, find_laser_dir
from featstore.featurize.options import FeaturizeOptions
from featstore.store import fingerprints_match

ENCODER, LASER = "encoder", "laser"


@dataclass(frozen=True)
class SourceSpec:
    """One source as the store sees it: its features are found and registered by fingerprint."""

    role: str  # ENCODER or LASER
    label: str  # readable part of the id a new source gets
    fingerprint: dict
    dtype: str
    shapes: dict[str, list[int]]

    @property
    def wanted(self) -> list[str]:
        """The features a text must have for this source to count as stored."""
        return sorted(self.shapes)


def load_encoder(options: FeaturizeOptions) -> Encoder:
    features = options.features
    enc = Encoder(options.model, device=options.device, max_length=options.max_length,
                  stride=options.stride, truncate=options.truncate, layers=options.layers,
                  features=features or LAYERED_FEATURES, dtype=options.dtype,
                  compute_dtype=options.compute_dtype,
                  trust_remote_code=options.trust_remote_code)
    if features is None and enc.has_pooler:
        enc.features = [*enc.features, "pooler"]
    return enc


def load_laser(options: FeaturizeOptions, warn: Callable[[str], None]) -> LaserVectors | None:
    """LASER when its models are found (unless `--no-laser`); a warning when they are missing
    only if LASER was asked for (`--laser`, `--laser-dir`), so a default run stays quiet."""
    if options.laser is False:
        return None
    laser_dir = find_laser_dir(options.laser_dir)
    if laser_dir is None:
        if options.laser or options.laser_dir:
            warn(f"warning: {MISSING_LASER_HINT}; continuing without LASER vectors")
        return None
    device = options.device if options.device != "auto" else "cpu"
    return LaserVectors(laser_dir, device=device)


def encoder_spec(encoder: Encoder, tokens: bool) -> SourceSpec:
    return SourceSpec(ENCODER, encoder.name, encoder.fingerprint, encoder.dtype,
                      encoder.feature_shapes(tokens))


def laser_spec(laser: LaserVectors, dtype: str) -> SourceSpec:
    return SourceSpec(LASER, "laser", {**laser.fingerprint, "dtype": dtype}, dtype,
                      {"vector": [laser.dim]})


@dataclass
class PassSources:
    """The sources of one pass: their specs, and the models already loaded to learn them (an
    engine may use those instead of loading its own)."""

    encoder: SourceSpec
    laser: SourceSpec | None
    model_name: str
    layers: int
    loaded_encoder: Encoder | None = None
    loaded_laser: LaserVectors | None = None
    options: FeaturizeOptions | None = None  # pins what `load_encoder` chose (pooler, laser dir)

    @property
    def specs(self) -> list[SourceSpec]:
        return [self.encoder, *([self.laser] if self.laser is not None else [])]


def identify_sources(options: FeaturizeOptions, warn: Callable[[str], None]) -> PassSources:
    """Load the encoder (and LASER) once to learn their fingerprints and shapes."""
    encoder = load_encoder(options)
    laser = load_laser(options, warn)
    pinned = replace(options, features=tuple(encoder.features),
                     laser_dir=str(laser.model_dir) if laser is not None else None,
                     laser=laser is not None)
    return PassSources(encoder=encoder_spec(encoder, options.tokens),
                       laser=laser_spec(laser, options.dtype) if laser is not None else None,
                       model_name=encoder.name, layers=len(encoder.layers),
                       loaded_encoder=encoder, loaded_laser=laser, options=pinned)


def check_same_encoder(encoder: Encoder, spec: SourceSpec) -> None:
    """A model loaded elsewhere (a worker, a later load) must be the very one identified."""
    if not fingerprints_match(encoder.fingerprint, spec.fingerprint):
        raise EncoderError(f"the encoder loaded now ({encoder.name}) differs from the one the "
                           "pass identified: every node must see the same model files")
