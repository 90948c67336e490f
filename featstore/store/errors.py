"""Errors the store raises; each message is one line a user can act on."""


class FeatstoreError(Exception):
    """Base for every error featstore reports to a user as a one-line message."""


class StoreError(FeatstoreError):
    """The store is missing, damaged, locked, or asked for something it does not hold."""


class FormatVersionError(StoreError):
    """The store was written by another on-disk format version."""


class LockedError(StoreError):
    """Another writer holds the store's lock."""


class DamagedShardError(StoreError):
    """A shard fails its checksum, size or structure check."""


class DamagedIndexError(StoreError):
    """A search index fails its size or checksum check; `featstore repair` drops it."""
