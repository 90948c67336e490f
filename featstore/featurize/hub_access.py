"""Whether a model named on the command line can be had at all, decided in well under a second:
a local directory that is not there, or a hub id with no network and nothing cached, is one
clear line instead of minutes of retries."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from featstore.featurize.errors import EncoderError

PROBE_TIMEOUT_S = 3.0
_ALTERNATIVES = ("set HF_HUB_OFFLINE=1 to use only models in the local Hugging Face cache, pass "
                 "a local model directory with --model, or leave --model out for the bundled "
                 "all-MiniLM-L6-v2")


def _looks_like_path(name: str) -> bool:
    """A hub id is NAME or ORG/NAME; anything else with a separator is meant as a path."""
    return name.startswith(("/", ".", "~")) or name.endswith("/") or name.count("/") > 1 \
        or "\\" in name


def _cached(model: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    try:
        return isinstance(try_to_load_from_cache(model, "config.json"), str)
    except (ValueError, OSError):
        return False


def _hub_reachable() -> bool:
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", port),
                                      timeout=PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def check_model_source(name: str, source: str) -> None:
    """Refuse in one line a model that cannot be loaded: a missing local directory, or a hub
    id neither cached nor reachable."""
    path = Path(source).expanduser()
    if path.is_dir():
        return
    if path.exists():
        raise EncoderError(f"--model {name}: {source} is a file; pass the model's directory")
    if _looks_like_path(source):
        raise EncoderError(f"--model {name}: no model directory {source}")
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    if _cached(source):
        return
    if offline:
        raise EncoderError(f"model {name!r} is not in the local Hugging Face cache and "
                           "HF_HUB_OFFLINE is set; pass a local model directory with --model, "
                           "or leave --model out for the bundled all-MiniLM-L6-v2")
    if not _hub_reachable():
        raise EncoderError(f"cannot reach the Hugging Face hub to download {name!r} (no "
                           f"network?): {_ALTERNATIVES}")
