"""LASER (BiLSTM, 93 languages) sentence vectors through the ``laserembeddings`` package.

laserembeddings does tokenisation, BPE and the encoder forward; this wrapper adds what a
cache needs on top: a weights-only checkpoint load, a strict device choice, a fixed float32
output for any batch size (including none) and a content fingerprint of the model files.
"""

from __future__ import annotations

import io
import os
import pathlib
import pickle  # for its error class only: nothing is unpickled here
from collections.abc import Sequence

import laserembeddings
import numpy as np
import torch
from laserembeddings import Laser

from featstore.featurize.errors import LaserError
from featstore.featurize.laser_files import (  # noqa: F401 (find_laser_dir: re-exported)
    LASER_FILES,
    MISSING_LASER_HINT,
    find_laser_dir,
)
from featstore.store.hashing import sha256_file


class LaserVectors:
    """Frozen LASER encoder: ``encode(texts)`` -> float32 ``[n, dim]`` max-pooled BiLSTM states."""

    name = "laser"
    dim: int

    def __init__(self, model_dir: str | os.PathLike, lang: str = "en", device: str = "cpu") -> None:
        if device not in ("cpu", "cuda"):
            raise LaserError(f"LASER runs on device cpu or cuda, not {device!r}")
        if device == "cuda" and not torch.cuda.is_available():
            # laserembeddings would quietly run on the CPU instead.
            raise LaserError("LASER on cuda asked for, but no CUDA GPU is available")
        self.model_dir = pathlib.Path(model_dir).expanduser()
        missing = [n for n in LASER_FILES if not (self.model_dir / n).is_file()]
        if missing:
            raise LaserError(f"{MISSING_LASER_HINT} (missing in {self.model_dir}: "
                             f"{', '.join(missing)})")
        self.lang = lang
        self.device = device
        codes, vocab, encoder = (self.model_dir / n for n in LASER_FILES)

        # laserembeddings runs a bare torch.load(path): weights-only merely by default, and only
        # on torch>=2.6 without TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD. So the file is unpickled once,
        # here, weights-only; laserembeddings gets a re-serialised copy of those plain tensors.
        try:
            state = torch.load(encoder, map_location="cpu", weights_only=True)
            params = state["params"]
            self.dim = int(params["hidden_size"]) * (2 if params.get("bidirectional") else 1)
            buffer = io.BytesIO()
            torch.save(state, buffer)
            del state
            buffer.seek(0)
            self._laser = Laser(
                bpe_codes=str(codes),
                bpe_vocab=str(vocab),
                encoder=buffer,
                embedding_options={"cpu": device == "cpu"},
            )
        except pickle.UnpicklingError:
            raise LaserError(f"LASER model {encoder} holds pickled objects other than tensors, "
                             "which featstore never unpickles") from None
        except (OSError, RuntimeError, KeyError, TypeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise LaserError(f"cannot load LASER models from {self.model_dir}: {first}"
                             ) from None
        self._hashes: dict[str, str] | None = None

    @property
    def fingerprint(self) -> dict:
        """What the vectors depend on; file hashes are computed on first use, then reused."""
        if self._hashes is None:
            self._hashes = {n: sha256_file(self.model_dir / n) for n in LASER_FILES}
        return {
            "kind": "laser",
            "package": "laserembeddings",
            "package_version": laserembeddings.__version__,
            "lang": self.lang,
            "files": dict(self._hashes),
            "dim": self.dim,
        }

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` in order; rows do not depend on batch neighbours (up to float noise)."""
        if isinstance(texts, str):
            raise LaserError("LASER encodes a sequence of texts, not a single str")
        if len(texts) == 0:  # laserembeddings would fail in np.vstack([])
            return np.zeros((0, self.dim), dtype=np.float32)
        with torch.inference_mode():  # laserembeddings' forward would otherwise record autograd
            vectors = self._laser.embed_sentences(list(texts), lang=self.lang)
        return np.ascontiguousarray(vectors, dtype=np.float32)
