"""Errors of the encoder pass; each message is one line a user can act on."""

from featstore.store import FeatstoreError


class CorpusError(FeatstoreError):
    """The corpus file cannot be read as asked."""


class EncoderError(FeatstoreError):
    """The encoder cannot be loaded or used as asked."""


class LaserError(FeatstoreError):
    """LASER's models cannot be found, loaded or run as asked."""


class EngineStateError(FeatstoreError):
    """An engine used out of order (a submission before `open`): a bug in the caller."""


class RayEngineError(FeatstoreError):
    """The Ray engine cannot run as asked (Ray missing, cluster unreachable, a worker failed)."""
