"""The one error type heads raise for bad input: a one-line message naming the problem."""

from featstore.store import FeatstoreError


class HeadError(FeatstoreError):
    """Bad input to a head: a missing column, an unusable label set, an unknown option."""
