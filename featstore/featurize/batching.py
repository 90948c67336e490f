"""Length-sorted, token-budget batches: little padding, and as many rows as the budget allows."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def token_budget_batches(lengths: np.ndarray, batch_tokens: int, max_rows: int = 1024,
                         same_length: bool = False) -> Iterator[np.ndarray]:
    """Index arrays into `lengths`, longest first, each padded batch within `batch_tokens`.

    `same_length` never mixes lengths in a batch: for models whose outputs change with padding
    (Funnel pools padded positions into real ones), that keeps a text's vectors independent of
    its batch neighbours.
    """
    order = np.argsort(-lengths, kind="stable")
    i = 0
    while i < len(order):
        longest = int(lengths[order[i]])
        n = max(1, min(max_rows, batch_tokens // max(longest, 1)))
        if same_length:
            n = min(n, int(np.searchsorted(-lengths[order[i:]], -longest, side="right")))
        yield order[i:i + n]
        i += n
