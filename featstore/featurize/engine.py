"""What an engine is: the part of a featurize pass that turns new texts into committed shards.

The driver does everything engines share (reading and checking the corpus, keys, which texts are
new, the dataset table, the summary) and hands each source's new texts to one engine. The local
engine encodes in this process; the Ray engine spreads the same work over an actor pool.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from featstore.featurize.errors import EngineStateError
from featstore.featurize.sources import PassSources
from featstore.store import StoreWriter

State = TypeVar("State")


def opened(state: State | None, engine: str) -> State:
    """What an engine's `open` set up; using the engine before `open` is refused."""
    if state is None:
        raise EngineStateError(f"the {engine} engine was used before open()")
    return state


@dataclass
class EngineReport:
    """What an engine committed."""

    def count_compute_dtype(self, attrs: dict[str, str] | None, rows: int) -> None:
        dtype = (attrs or {}).get("compute_dtype", "unrecorded")
        self.compute_dtypes[dtype] = self.compute_dtypes.get(dtype, 0) + rows

    new: int = 0  # texts encoded by the encoder
    laser_new: int = 0
    cross_new: int = 0  # pairs encoded jointly
    cross_seconds: float = 0.0
    windows: int = 0
    bytes_written: int = 0
    encode_seconds: float = 0.0
    load_seconds: float = 0.0  # loading the model and readying its runtime here (Ray: 0)
    # the encoder's new rows per compute dtype (one, unless Ray workers differ in hardware)
    compute_dtypes: dict[str, int] = field(default_factory=dict)
    # Actors used (None: this process). Workers may publish files that are never committed
    # (attempts Ray retried), so the driver sweeps orphans once the pass is committed.
    workers: int | None = None


class Engine(Protocol):
    def open(self, writer: StoreWriter, sources: PassSources, ids: dict[str, str],
             progress: Callable[[int], None]) -> None:
        """Start under the writer's lock. An engine is built before the sources are identified,
        so that its own checks fail before any model loads; `ids` maps each source role to its
        id in the store; `progress(n)` is called as the encoder's texts are committed."""

    def submit(self, role: str, keys: list[str], texts: list[str],
               only: list[str] | None = None) -> None:
        """Texts of one source (by role) that the store lacks, each key once; `only`: the
        features to store for them (None: all), the others being committed already."""

    def finish(self) -> EngineReport:
        """Commit everything submitted; raise what went wrong."""

    def close(self) -> None:
        """Release workers and threads on any exit (after `finish`, or on an error)."""
