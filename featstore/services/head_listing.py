"""The saved heads as `featstore heads list` shows them: what each reads (encoder, fused sources)
and does, in words, from head.json alone. Light (no torch, scipy or scikit-learn): listing heads
is instant."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from featstore.heads.artifacts import list_heads, read_head_json
from featstore.heads.errors import HeadError
from featstore.heads.kinds import primary_metric
from featstore.store import default_store_path, short_model_name


def _sources(doc: dict[str, Any]) -> list[str]:
    """The fused sources by the names people use (imported vectors' names, `laser`, a model's
    short name)."""
    out = []
    for s in doc.get("sources", []):
        fp = s.get("fingerprint", {})
        name = fp.get("name") or (fp.get("kind") if fp.get("kind") != "encoder" else None) \
            or short_model_name(fp.get("model") or s.get("name"))
        out.append(str(name))
    return out


def _encoder_name(doc: dict[str, Any]) -> str:
    return short_model_name(doc.get("encoder", {}).get("fingerprint", {}).get("model") or "-")


def single_description(cfg: dict[str, Any], doc: dict[str, Any]) -> str:
    """A per-text head in words: `mean-max + mlp x5 seeds, fused with laser (project)`."""
    what = f"{cfg.get('pool')}"
    if cfg.get("of"):
        what += f"({cfg['of']})"
    layers = doc.get("layers") or []
    if len(layers) > 1 or cfg.get("layers"):
        what += f" of layers {','.join(map(str, layers))}"
    what += f" + {cfg.get('head')}"
    if (cfg.get("seeds") or cfg.get("ensemble") or 1) > 1:
        what += f" x{cfg.get('seeds') or cfg.get('ensemble')} seeds"
    sources = _sources(doc)
    if sources:
        what += f", fused with {'+'.join(sources)} ({cfg.get('fuse_mode', 'concat')})"
    return what


def describe_head(doc: dict[str, Any]) -> str:
    """Any head in words; an ensemble as its members with their weights."""
    cfg = doc.get("config", {})
    kind = doc.get("kind", "text")
    if kind == "ensemble":
        members = doc.get("members", [])
        weights = cfg.get("weights") or [1 / max(1, len(members))] * len(members)
        if cfg.get("task") == "regression":  # a stack: signed weights and an intercept
            parts = [f"{w:+.3g} x {single_description(m.get('config', {}), m)}"
                     for w, m in zip(weights, members, strict=False)]
            return (f"stack of {len(members)}, intercept {cfg.get('intercept', 0.0):+.3g}: "
                    + "; ".join(parts))
        parts = [f"{w:.2f} {single_description(m.get('config', {}), m)}"
                 for w, m in sorted(zip(weights, members, strict=False), key=lambda x: -x[0])]
        return f"ensemble of {len(members)}: " + "; ".join(parts)
    if kind == "sequence":
        return (f"sequences by {cfg.get('group_by')}: {doc.get('seq_head', cfg.get('seq_head'))}"
                f" over each message's {cfg.get('pool')}")
    return single_description(cfg, doc)


def describe_heads(store_path: str | Path | None) -> list[dict[str, Any]]:
    """One row per saved head: name, task, pooling, head kind, encoder, fused sources, a
    description in words, training dataset, its primary score and when it was made; a damaged
    head is listed with the reason instead."""
    root = default_store_path(store_path)
    if not (root / "manifest.json").is_file():
        from featstore.store import open_store

        open_store(root)  # the one-line "no store" error
    rows = []
    for name in list_heads(root):
        try:
            doc = read_head_json(root, name)
        except HeadError as exc:
            rows.append({"name": name, "task": "-", "pool": "-", "head": "-", "encoder": "-",
                         "fuse": [], "description": "-", "dataset": None, "metric": "-",
                         "score": None, "created": f"damaged: {exc}"})
            continue
        cfg = doc.get("config", {})
        task = cfg.get("task", "classification")
        metric = primary_metric(task)
        kind = doc.get("kind", "text")
        members = doc.get("members", []) if kind == "ensemble" else [doc]
        fuse = list(dict.fromkeys(s for m in members for s in _sources(m)))
        pools = list(dict.fromkeys(str(m.get("config", {}).get("pool")) for m in members))
        rows.append({
            "name": name, "kind": kind, "task": task,
            "pool": ", ".join(pools) if kind == "ensemble" else cfg.get("pool"),
            "head": f"ensemble of {len(members)}" if kind == "ensemble" else
            (f"seq {doc.get('seq_head', cfg.get('seq_head'))}" if kind == "sequence"
             else cfg.get("head")),
            "encoder": _encoder_name(members[0]) if members else "-",
            "encoder_id": (members[0] if members else doc).get("encoder", {}).get("id"),
            "fuse": fuse, "description": describe_head(doc),
            "dataset": doc.get("evaluation", {}).get("train"), "metric": metric,
            "score": doc.get("metrics", {}).get(metric), "created": doc.get("created", "")})
    return rows
