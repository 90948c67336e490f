"""The vector sources a pass computes (the encoder, LASER): loading them, and what the store must
know of each (fingerprint, dtype, feature shapes) to find, register and check their features.

A source's identity comes from the fingerprint cache when its model files are unchanged, so a
pass that finds nothing new imports no torch and loads no model; torch, transformers and
laserembeddings are imported only where a model is loaded."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from featstore.featurize import fingerprint_cache as fpcache
from featstore.featurize.errors import EncoderError, LaserError
from featstore.featurize.laser_files import MISSING_LASER_HINT, find_laser_dir
from featstore.featurize.model_names import is_hub_revision, resolve_model
from featstore.featurize.options import FeaturizeOptions
from featstore.featurize.pair_facts import CROSS_VERSION, LOGITS, pair_facts
from featstore.store import fingerprints_match

if TYPE_CHECKING:
    from featstore.featurize.encoder import Encoder
    from featstore.featurize.laser import LaserVectors
    from featstore.store import Store

ENCODER, LASER, CROSS = "encoder", "laser", "cross"


@dataclass(frozen=True)
class SourceSpec:
    """One source as the store sees it: its features are found and registered by fingerprint."""

    role: str  # ENCODER, LASER or CROSS
    label: str  # readable part of the id a new source gets
    fingerprint: dict
    dtype: str
    shapes: dict[str, list[int]]

    @property
    def wanted(self) -> list[str]:
        """The features a text must have for this source to count as stored."""
        return sorted(self.shapes)


def load_encoder(options: FeaturizeOptions) -> Encoder:
    from featstore.featurize.encoder import Encoder

    runtime = options.runtime
    if options.tokens and runtime == "openvino":
        raise EncoderError("--tokens needs --runtime torch (OpenVINO returns pooled rows only)")
    if options.tokens:  # token states come from torch's hidden states
        runtime = "torch"
    return Encoder(options.model, device=options.device, max_length=options.max_length,
                   stride=options.stride, truncate=options.truncate, layers=options.layers,
                   features=options.features, dtype=options.dtype,
                   compute_dtype=options.compute_dtype, runtime=runtime,
                   trust_remote_code=options.trust_remote_code)


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
    from featstore.featurize.laser import LaserVectors

    device = options.device if options.device != "auto" else "cpu"
    return LaserVectors(laser_dir, device=device)


def encoder_spec(encoder: Encoder, tokens: bool) -> SourceSpec:
    return SourceSpec(ENCODER, encoder.name, encoder.fingerprint, encoder.dtype,
                      encoder.feature_shapes(tokens))


def laser_spec(laser: LaserVectors, dtype: str) -> SourceSpec:
    return _laser_spec(laser.fingerprint, laser.dim, dtype)


def _laser_spec(fingerprint: dict, dim: int, dtype: str) -> SourceSpec:
    return SourceSpec(LASER, "laser", {**fingerprint, "dtype": dtype}, dtype, {"vector": [dim]})


def cross_spec(encoder: SourceSpec, features: Sequence[str], logits: int) -> SourceSpec:
    """The joint encoding of pairs by this encoder, as a source of its own: its fingerprint
    holds the encoder's (model, weights, windows, layers), the pair-encoding version and the
    number of logits a sequence-classification model adds; the layered features the encoder
    stores, keyed by pair."""
    fp = encoder.fingerprint
    layered = [f for f in features if f not in ("pooler", "tokens")]
    shapes = {f: [len(fp["layers"]), int(fp["hidden"])] for f in layered}
    if logits:
        shapes[LOGITS] = [logits]
    fingerprint = {"kind": CROSS, "cross_version": CROSS_VERSION, "encoder": fp,
                   "layers": list(fp["layers"]), "hidden": int(fp["hidden"]), "logits": logits}
    return SourceSpec(CROSS, f"{encoder.label}-cross", fingerprint, encoder.dtype, shapes)


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
    cache_keys: dict[str, str] = field(default_factory=dict)  # role -> fingerprint cache entry
    cross: SourceSpec | None = None  # with options.cross: the pairs' joint encoding

    @property
    def specs(self) -> list[SourceSpec]:
        return [self.encoder, *([self.laser] if self.laser is not None else []),
                *([self.cross] if self.cross is not None else [])]


def _encoder_cache_key(options: FeaturizeOptions) -> str | None:
    try:
        name, source = resolve_model(options.model)
    except EncoderError:
        return None
    identity = fpcache.files_identity(source)
    if identity is None:
        return None
    settings = {"name": name, "max_length": options.max_length, "stride": options.stride,
                "truncate": options.truncate, "layers": options.layers,
                "features": options.features, "dtype": options.dtype,
                "trust_remote_code": options.trust_remote_code,
                "default_length": "sentence_bert_config",  # how a length left out is chosen
                "transformers": fpcache.package_version("transformers"),
                "tokenizers": fpcache.package_version("tokenizers")}
    return fpcache.cache_key(ENCODER, identity, settings)


def _laser_cache_key(options: FeaturizeOptions) -> str | None:
    laser_dir = find_laser_dir(options.laser_dir) if options.laser else None
    identity = fpcache.files_identity(str(laser_dir)) if laser_dir is not None else None
    if identity is None:
        return None
    return fpcache.cache_key(LASER, identity, {
        "laser_dir": str(laser_dir), "laserembeddings": fpcache.package_version("laserembeddings")})


def _cached_encoder_spec(value: dict, tokens: bool) -> tuple[SourceSpec, list[str]]:
    fp, shapes = value["fingerprint"], {k: list(v) for k, v in value["shapes"].items()}
    if tokens:
        shapes["tokens"] = [len(fp["layers"]), int(fp["hidden"])]
    return SourceSpec(ENCODER, value["name"], fp, fp["dtype"], shapes), list(value["features"])


def identify_sources(options: FeaturizeOptions, warn: Callable[[str], None]) -> PassSources:
    """Learn each source's fingerprint and shapes: from the fingerprint cache when the model
    files are unchanged, else by loading the model (the pass then reuses that model)."""
    keys = {ENCODER: _encoder_cache_key(options)}
    cached = fpcache.lookup(keys[ENCODER]) if keys[ENCODER] else None
    encoder = None
    try:
        enc_spec, features = _cached_encoder_spec(cached, options.tokens) if cached else (
            None, None)
    except (KeyError, TypeError, ValueError, AttributeError):  # a damaged entry is a miss
        enc_spec = features = None
    if enc_spec is None or features is None:
        check_expected_source(options)
        encoder = load_encoder(options)
        enc_spec, features = encoder_spec(encoder, options.tokens), list(encoder.features)
        # remembered only under the files' identity as they were while the model loaded
        if keys[ENCODER] and _encoder_cache_key(options) == keys[ENCODER]:
            fpcache.remember(keys[ENCODER], {
                "name": encoder.name, "fingerprint": encoder.fingerprint,
                "features": features, "shapes": encoder.feature_shapes(False)})
    check_expected(options, enc_spec.fingerprint)
    laser, laser_found, laser_source = None, None, None
    keys[LASER] = _laser_cache_key(options)
    value = fpcache.lookup(keys[LASER]) if keys[LASER] else None
    if value is not None:
        try:
            laser_source = _laser_spec(value["fingerprint"], int(value["dim"]), options.dtype)
            laser_found = find_laser_dir(options.laser_dir)
        except (KeyError, TypeError, ValueError):
            laser_source = None
    if laser_source is None:
        laser = load_laser(options, warn)
        if laser is not None:
            laser_source, laser_found = laser_spec(laser, options.dtype), laser.model_dir
            if keys[LASER]:
                fpcache.remember(keys[LASER], {"fingerprint": laser.fingerprint,
                                               "dim": laser.dim})
    pinned = replace(options, features=tuple(features),
                     laser_dir=str(laser_found) if laser_source is not None else None,
                     laser=laser_source is not None)
    cross = None
    if options.cross:
        keys[CROSS] = _cross_cache_key(options)
        facts = pair_facts(options.model, options.trust_remote_code, encoder,
                           fpcache.lookup(keys[CROSS]) if keys[CROSS] else None)
        if keys[CROSS]:
            fpcache.remember(keys[CROSS], facts)
        cross = cross_spec(enc_spec, features, int(facts["logits"]))
    return PassSources(encoder=enc_spec, laser=laser_source, model_name=enc_spec.label,
                       layers=len(enc_spec.fingerprint["layers"]), loaded_encoder=encoder,
                       loaded_laser=laser, options=pinned,
                       cache_keys={k: v for k, v in keys.items() if v}, cross=cross)


def _cross_cache_key(options: FeaturizeOptions) -> str | None:
    """What a model's files say about pairs (a separator, logits) is cached by their identity."""
    try:
        source = resolve_model(options.model)[1]
    except EncoderError:
        return None
    identity = fpcache.files_identity(source)
    if identity is None:
        return None
    return fpcache.cache_key(CROSS, identity, {
        "cross_version": CROSS_VERSION, "trust_remote_code": options.trust_remote_code,
        "transformers": fpcache.package_version("transformers"),
        "tokenizers": fpcache.package_version("tokenizers")})


def laser_fingerprint(laser_dir: str | Path) -> dict:
    """The fingerprint of the LASER models in `laser_dir` (from the fingerprint cache when the
    files are unchanged, else by loading them), storage dtype aside."""
    options = FeaturizeOptions(laser=True, laser_dir=str(laser_dir))
    key = _laser_cache_key(options)
    value = fpcache.lookup(key) if key else None
    if value is not None and isinstance(value.get("fingerprint"), dict):
        return dict(value["fingerprint"])
    from featstore.featurize.laser import LaserVectors

    laser = LaserVectors(laser_dir)
    if key:
        fpcache.remember(key, {"fingerprint": laser.fingerprint, "dim": laser.dim})
    return laser.fingerprint


def same_encoder(a: dict, b: dict) -> bool:
    """Whether two fingerprints describe the same features: equal, or computed from the same
    files in two places (a model directory recorded by another spelling or path: its weights
    and every other file hash the same, so the vectors are the same)."""
    if fingerprints_match(a, b):
        return True
    if a.get("kind") == CROSS and b.get("kind") == CROSS:  # the same files in two places
        return same_encoder(a.get("encoder", {}), b.get("encoder", {})) and \
            {**a, "encoder": None} == {**b, "encoder": None}
    if a.get("kind") != "encoder" or b.get("kind") != "encoder" or is_hub_revision(a) or \
            is_hub_revision(b):
        return False
    return fingerprints_match({**a, "model": ""}, {**b, "model": ""})


def find_stored_encoder(store: Store, fingerprint: dict) -> str | None:
    """The id under which the store holds features of this fingerprint (see `same_encoder`)."""
    found = store.find_encoder(fingerprint)
    if found is not None:
        return found
    return next((k for k, e in store.manifest.encoders.items()
                 if same_encoder(e.fingerprint, fingerprint)), None)


def check_expected_source(options: FeaturizeOptions) -> None:
    """A pass that must reproduce a stored encoder computed from a model directory needs that
    directory: say so, rather than look for a hub model of that name."""
    fp = options.expect
    if fp is None or fp.get("kind") != "encoder" or is_hub_revision(fp):
        return
    model = str(fp.get("model"))
    try:
        source = resolve_model(model)[1]  # the bundled model's hub name loads from its package
    except EncoderError:
        source = model
    if not Path(source).expanduser().is_dir():
        where = "" if Path(model).is_absolute() else f" (looked for from {Path.cwd()})"
        raise EncoderError(f"the encoder was computed from the model directory {model}, which "
                           f"is not there{where}; restore it (or run from the directory the "
                           "store was featurized from) to encode new texts with it")


def check_expected(options: FeaturizeOptions, fingerprint: dict) -> None:
    """The model files must still hold the weights the expected encoder was computed with."""
    fp = options.expect
    if fp is None or same_encoder(fp, fingerprint):
        return
    if fp.get("weights_sha256") != fingerprint.get("weights_sha256") or \
            fp.get("tokenizer_sha256") != fingerprint.get("tokenizer_sha256"):
        raise EncoderError(
            f"model {fp.get('model')} now holds other files than the encoder was computed with "
            f"(weights sha256 {str(fingerprint.get('weights_sha256'))[:12]}... where it was "
            f"{str(fp.get('weights_sha256'))[:12]}...); nothing was written: restore the "
            "model's files, or featurize with the new ones and fit the head again")
    raise EncoderError(f"the encoder of model {fp.get('model')} cannot be reproduced by this "
                       "featstore (its settings or featurizer version differ); nothing was "
                       "written: featurize afresh and fit the head again")


def check_loaded(pass_sources: PassSources, encoder: Encoder | None = None,
                 laser: LaserVectors | None = None) -> None:
    """A model loaded after the pass was identified (from the cache) must be the one
    identified; if not, the cache entry goes, so the next pass identifies afresh."""
    try:
        if encoder is not None:
            check_same_encoder(encoder, pass_sources.encoder)
        spec = pass_sources.laser
        if laser is not None and spec is not None and not fingerprints_match(
                laser_spec(laser, spec.dtype).fingerprint, spec.fingerprint):
            raise LaserError("the LASER models loaded now differ from the ones the pass "
                             "identified; run the pass again")
    except (EncoderError, LaserError):
        for key in pass_sources.cache_keys.values():
            fpcache.forget(key)
        raise


def check_same_encoder(encoder: Encoder, spec: SourceSpec) -> None:
    """A model loaded elsewhere (a worker, a later load) must be the very one identified."""
    if not fingerprints_match(encoder.fingerprint, spec.fingerprint):
        raise EncoderError(f"the files of model {encoder.name} changed since this pass began "
                           "(or differ on another node); nothing was written for it: run the "
                           "pass again once they stay unchanged (every node must see the same "
                           "model files)")
