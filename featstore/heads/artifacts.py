"""Head artifacts: STORE/heads/NAME/{head.safetensors, head.json}. No pickle anywhere.

head.safetensors holds every array (network weights under `net.`, further ensemble
members under `net1.`, ..., logistic regression under
`logreg.`, normaliser statistics under `norm.`); head.json holds the configuration, label map,
metrics and the fingerprints of the encoder and fusion sources, so that a head is only ever
applied to features made the same way. Save and load are symmetric: `load_head(save_head(h))`
predicts exactly what `h` predicts. A head is written to a temporary directory and renamed into
place, so readers see the old head or the new one, never a mix.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

from featstore.heads.data import LabelMap
from featstore.heads.errors import HeadError
from featstore.heads.estimators import HeadClassifier, HeadRegressor, _HeadBase
from featstore.heads.features import Source
from featstore.heads.fusion import Normalizer
from featstore.heads.logreg import logreg_from_state, logreg_state
from featstore.store import Store, check_name

HEADS_DIR = "heads"
WEIGHTS = "head.safetensors"
CONFIG = "head.json"
FORMAT = "featstore-head"
FORMAT_VERSION = 1


def head_dir(store: Store | str | os.PathLike, name: str) -> Path:
    root = store.root if isinstance(store, Store) else Path(store)
    check_name(name, "head")
    return root / HEADS_DIR / name


def list_heads(store: Store) -> list[str]:
    base = store.root / HEADS_DIR
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if (p / CONFIG).is_file())


def match_encoder(store: Store, fingerprint: dict, what: str) -> str:
    """The id of the store's encoder with exactly this fingerprint; refuse anything else."""
    for enc_id, entry in store.manifest.encoders.items():
        if entry.fingerprint == fingerprint:
            return enc_id
    model = fingerprint.get("model", "?")
    held = ", ".join(f"{k} ({e.fingerprint.get('model', '?')})"
                     for k, e in store.manifest.encoders.items()) or "none"
    raise HeadError(f"{what}: the head was trained on features of {model} with a fingerprint this "
                    f"store does not hold (encoders here: {held}); refit the head on this store")


def _tensors(head: _HeadBase) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for key, norm in head.normalizers_.items():
        out.update(norm.state(f"norm.{key}"))
    if head.head_kind == "logreg":
        out.update(logreg_state(head.model_))
    else:
        for i, net in enumerate(head.networks_):
            prefix = "net." if i == 0 else f"net{i}."
            for k, v in net.state_dict().items():
                out[f"{prefix}{k}"] = v.detach().cpu().numpy().copy()
    return {k: np.ascontiguousarray(v) for k, v in out.items()}


def _document(head: _HeadBase, metrics: dict | None, extra: dict | None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": head._config(),
        "encoder": {"id": head.encoder_id_, "fingerprint": head.encoder_fingerprint_},
        "features": head.features_,
        "layers": head.layers_,
        "sources": [{"name": s.name, "id": s.encoder_id, "feature": s.feature,
                     "layer": s.layer, "fingerprint": fp}
                    for s, fp in zip(head.sources_, head.source_fingerprints_, strict=True)],
        "input_dims": head.input_dims_,
        "fit": head.fit_info_,
        "metrics": metrics or {},
    }
    if head._task == "classification":
        doc["labels"] = head.labels_.classes
    else:
        doc["target"] = {"mean": head.target_mean_, "std": head.target_std_}
    if extra:
        doc.update(extra)
    return doc


def save_head(head: _HeadBase, store: Store | str | os.PathLike, name: str,
              metrics: dict | None = None, extra: dict | None = None) -> Path:
    """Write a fitted head to STORE/heads/NAME atomically; replaces a head of that name."""
    head._check_fitted()
    final = head_dir(store, name)
    base = final.parent
    base.mkdir(parents=True, exist_ok=True)
    tmp = base / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        save_file(_tensors(head), str(tmp / WEIGHTS), metadata={"format": FORMAT})
        doc = _document(head, metrics, extra)
        try:
            text = json.dumps(doc, indent=1, sort_keys=True, allow_nan=True)
        except TypeError as exc:
            raise HeadError(f"head {name}: labels or metrics are not JSON-serialisable ({exc})"
                            ) from None
        (tmp / CONFIG).write_text(text + "\n", encoding="utf-8")
        for f in (WEIGHTS, CONFIG):
            with open(tmp / f, "rb") as fh:
                os.fsync(fh.fileno())
        old = None
        if final.exists():
            old = base / f".old-{name}-{uuid.uuid4().hex[:8]}"
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def read_head_json(store: Store | str | os.PathLike, name: str) -> dict[str, Any]:
    path = head_dir(store, name) / CONFIG
    if not path.is_file():
        root = store.root if isinstance(store, Store) else Path(store)
        known = ", ".join(list_heads(Store(root))) if (root / "manifest.json").exists() else ""
        raise HeadError(f"no head {name!r} in {root / HEADS_DIR} (heads: {known or 'none'})")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise HeadError(f"head {name}: {CONFIG} is not valid JSON ({exc})") from None
    if doc.get("format") != FORMAT or doc.get("format_version") != FORMAT_VERSION:
        raise HeadError(f"head {name}: not a {FORMAT} version {FORMAT_VERSION} artifact")
    return doc


def load_head(store: Store | str | os.PathLike, name: str) -> _HeadBase:
    """Rebuild a fitted head from its artifact; predictions equal those before saving."""
    doc = read_head_json(store, name)
    tensors = load_file(str(head_dir(store, name) / WEIGHTS))
    cfg = dict(doc["config"])
    task = cfg.pop("task")
    cls = HeadRegressor if task == "regression" else HeadClassifier
    head = cls(**{k: v for k, v in cfg.items() if k in _HeadBase._PARAMS})
    head.encoder_id_ = doc["encoder"]["id"]
    head.encoder_fingerprint_ = doc["encoder"]["fingerprint"]
    head.features_ = list(doc["features"])
    head.layers_ = list(doc["layers"])
    head.sources_ = [Source(s["name"], s["id"], s["feature"], s["layer"])
                     for s in doc["sources"]]
    head.source_fingerprints_ = [s["fingerprint"] for s in doc["sources"]]
    head.input_dims_ = doc["input_dims"]
    head.fit_info_ = doc.get("fit", {})
    head.metrics_ = doc.get("metrics", {})
    head.normalizers_ = {"enc": Normalizer.from_state(head.normalize, tensors, "norm.enc")}
    for i in range(len(head.sources_)):
        head.normalizers_[f"src{i}"] = Normalizer.from_state(head.normalize, tensors,
                                                             f"norm.src{i}")
    if task == "classification":
        head.labels_ = LabelMap(list(doc["labels"]))
    else:
        head.target_mean_ = float(doc["target"]["mean"])
        head.target_std_ = float(doc["target"]["std"])
    if head.head_kind == "logreg":
        head.model_ = logreg_from_state(tensors, float(head.fit_info_.get("C", 1.0)))
    else:
        head.networks_ = []
        for i in range(int(cfg.get("ensemble", 1))):
            prefix = "net." if i == 0 else f"net{i}."
            net = head._build_network()
            state = {k[len(prefix):]: torch.from_numpy(v.copy()) for k, v in tensors.items()
                     if k.startswith(prefix)}
            try:
                net.load_state_dict(state)
            except RuntimeError as exc:
                raise HeadError(f"head {name}: weights do not fit its configuration ({exc})"
                                ) from None
            net.eval()
            head.networks_.append(net)
    return head
