"""The errors heads raise for bad input: one line naming the problem.

`HeadError` is any bad input to a head (a missing column, an unusable label set). `ParamError`
is a parameter value that cannot work; it is also a ValueError, as scikit-learn's are, and its
message names parameters as Python does (`lr must be positive, got -1`) while the command line
words the same error with its flags (`--lr must be positive, got -1`).
"""

from __future__ import annotations

from collections.abc import Callable

from featstore.store import FeatstoreError


class HeadError(FeatstoreError):
    """Bad input to a head: a missing column, an unusable label set, an unknown option."""


class ParamError(HeadError, ValueError):
    """A parameter value (or combination) that cannot work.

    `template` names parameters in braces: `{lr}` is the parameter itself, `{head=}` the
    parameter about to be followed by a value ("head=logreg", on the command line "--head
    logreg"); other braces are doubled."""

    def __init__(self, template: str) -> None:
        self.template = template
        super().__init__(self.worded(lambda name: name, "="))

    def worded(self, name_of: Callable[[str], str], assign: str = " ") -> str:
        """The message with each parameter named by `name_of` (the command line passes its
        flags), values joined to names by `assign`."""
        return self.template.format_map(_Names(name_of, assign))


def literal(text: str) -> str:
    """Text to put inside a ParamError template as it is (its braces doubled)."""
    return text.replace("{", "{{").replace("}", "}}")


class _Names(dict):
    def __init__(self, name_of: Callable[[str], str], assign: str) -> None:
        super().__init__()
        self.name_of, self.assign = name_of, assign

    def __missing__(self, key: str) -> str:
        if key.endswith("="):
            return self.name_of(key[:-1]) + self.assign
        return self.name_of(key)
