"""Length-sorted, token-budget batches: little padding, and as many rows as the budget allows."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def token_budget_batches(lengths: np.ndarray, batch_tokens: int, max_rows: int = 1024
                         ) -> Iterator[np.ndarray]:
    """Index arrays into `lengths`, longest first, each padded batch within `batch_tokens`."""
    order = np.argsort(-lengths, kind="stable")
    i = 0
    while i < len(order):
        longest = int(lengths[order[i]])
        n = max(1, min(max_rows, batch_tokens // max(longest, 1)))
        yield order[i:i + n]
        i += n
