"""What a saved head is called when no name is given: DATASET-POOL-HEAD (DATASET-seq-KIND for a
sequence head, DATASET-auto for `--auto`), then the encoder where one was named and the fused
sources, so a fused head never takes the unfused one's name. Light: no torch, no scikit-learn,
so the command line refuses a taken name before any work."""

from __future__ import annotations

import re
from collections.abc import Sequence

from featstore.heads.kinds import default_head
from featstore.heads.params import SEQUENCE_HEAD, TEXT_HEAD
from featstore.store import check_name, short_model_name

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _slug(name: str) -> str:
    return _UNSAFE.sub("-", short_model_name(name)).strip("-.") or "source"


def sources_suffix(encoder: str | None = None, fuse: Sequence[str] | None = (),
                   fuse_mode: str = "concat") -> str:
    """`-ENCODER` for an encoder named, `-fuse-A-B` for fused sources (`-project` when they are
    projected): short model names, never paths."""
    out = f"-{_slug(encoder)}" if encoder else ""
    if fuse:
        out += "-fuse-" + "-".join(_slug(f) for f in fuse)
        out += "-project" if fuse_mode == "project" else ""
    return out


def head_name(dataset: str, what: str) -> str:
    """DATASET-WHAT as a valid head name (at most 128 characters)."""
    return check_name(f"{dataset}-{what}"[:128].rstrip("-."), "head")


def text_head_what(params: dict, task: str = "classification") -> str:
    """POOL-HEAD plus the sources' suffix of a per-text head with these parameters (the head
    resolved as the estimator resolves it)."""
    pool = params.get("pool") or TEXT_HEAD["pool"].default
    mode = params.get("fuse_mode") or TEXT_HEAD["fuse_mode"].default
    head = params.get("head") or default_head(pool, task, mode)
    return f"{pool}-{head}" + sources_suffix(params.get("encoder"), params.get("fuse"), mode)


def sequence_head_what(params: dict) -> str:
    """seq-KIND plus the sources' suffix of a sequence head with these parameters."""
    kind = params.get("seq_head") or SEQUENCE_HEAD["seq_head"].default
    return f"seq-{kind}" + sources_suffix(params.get("encoder"), params.get("fuse"))
