"""`featstore audit`: what a labelled dataset holds before any head is trusted on it.

- Near-duplicates: every training text's nearest training texts, and every evaluation text's
  nearest training texts, by cosine of the layout's vectors (`featstore.search`); pairs at or
  above the threshold are joined into groups (single linkage). An evaluation row in a group
  with training rows has a near-twin in training: leakage.
- Likely label errors: out-of-fold class probabilities of every training row, from the head
  (among a few cheap candidates) that the training folds score best, run through the existing
  protocol (`run_protocol` under K-fold CV); confident learning ranks the rows
  (`featstore.reports.label_issues`).
- A map: the vectors projected to 2-D, coloured by label, with the flagged and leaked rows
  marked (`featstore.reports.embedding_map`).

Files are refused before any work when they exist, unless `overwrite`.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from featstore.heads.errors import HeadError
from featstore.heads.labels import LabelMap
from featstore.heads.protocols import (
    EvaluationPlan,
    default_training_dataset,
    plan_evaluation,
    run_protocol,
    trials,
)
from featstore.heads.units import TEXT
from featstore.reports.embedding_map import draw_map
from featstore.reports.label_issues import find_label_issues
from featstore.search.layouts import SearchLayout
from featstore.search.neighbors import NeighborSearch, SearchReport, progress_bar
from featstore.services.datasets import dataset_for
from featstore.services.featurizing import Say
from featstore.store import KEY_COLUMN, Store, default_store_path, open_store
from featstore.store.atomic import can_create_in

FILES = {"duplicates": "duplicates.csv", "label_issues": "label_issues.csv", "map": "map.png"}
# Cosine at and above which two texts are near-duplicates (bundled MiniLM, mean of the top
# layer), chosen on Banking77 train (bench/neighbors.py): taking as near-duplicates the
# nearest-neighbour pairs whose texts are 90% alike as strings once case and punctuation are
# dropped, 0.98 gives the best F1 (precision 0.54, recall 0.48; 0.95: 0.27 and 0.82, 0.99: 0.85
# and 0.27). Below about 0.97 the pairs are paraphrases of one intent, which such a dataset is
# made of (27% of its texts have another at 0.95 or more); above it they are the same words
# reworded in one or two places. Texts differing by a typo often fall far lower (median 0.86):
# no cosine threshold finds those without drowning them in paraphrases.
DEFAULT_THRESHOLD = 0.98
NEIGHBORS_K = 10
# what rates the labels: cheap heads scored on the training folds, the best one kept
# (on Banking77 with 5% flipped labels the MLP's held-out probabilities were the better ones:
# accuracy 87.3 against 85.2 and label-error F1 0.81 against 0.75; logreg at C 1 was worse
# than at C 0.1, whose regularisation holds up better against the flipped labels)
CANDIDATES = ({"pool": "mean-max", "head": "logreg", "C": 0.1},
              {"pool": "mean-max", "head": "mlp", "epochs": 20})
POSITION = "_audit_position"  # a training row's position, carried through the folds


def audit_paths(out: str | os.PathLike | None, train: str | None, overwrite: bool
                ) -> dict[str, Path]:
    """The three files, in --out (default audit-TRAIN), refused before any work when one exists
    (unless `overwrite`) or the directory cannot take files."""
    stem = Path(train).stem if train else "data"
    directory = Path(out) if out is not None else Path(f"audit-{stem}")
    if directory.exists() and not directory.is_dir():
        raise HeadError(f"--out {directory} is a file, not a directory")
    paths = {k: directory / v for k, v in FILES.items()}
    taken = [str(p) for p in paths.values() if os.path.lexists(p)]
    if taken and not overwrite:
        raise HeadError(f"{taken[0]} already exists; pass --overwrite to replace the audit's "
                        "files, or another --out")
    for p in paths.values():
        if p.is_dir():
            raise HeadError(f"{p} is a directory")
    if not can_create_in(directory):
        raise HeadError(f"cannot create files in {directory.absolute()}; pass another --out")
    return paths


@dataclass
class AuditResult:
    train: str
    eval: str | None
    label_col: str
    train_rows: int
    eval_rows: int
    threshold: float
    layout: str
    search: SearchReport
    groups_within: int
    rows_in_groups_within: int
    groups_across: int
    leaked_rows: int
    leaked_exact: int
    exact_duplicate_rows: int
    head: str
    head_accuracy: float
    candidates: list[dict[str, Any]]
    folds: int
    label_issues: int
    map_method: str
    files: dict[str, str]
    seconds: float
    top_issues: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)
    top_leaks: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if not isinstance(v, pd.DataFrame)}
        out["search"] = self.search.to_dict()
        out["top_issues"] = self.top_issues.to_dict(orient="records")
        out["top_leaks"] = self.top_leaks.to_dict(orient="records")
        return out

    def text(self) -> str:
        pct = 100 * self.leaked_rows / self.eval_rows if self.eval_rows else 0.0
        lines = [
            f"train     {self.train} ({self.train_rows} rows, labels in {self.label_col!r})"
            + (f" · eval {self.eval} ({self.eval_rows} rows)" if self.eval else ""),
            f"vectors   {self.layout} · {self.search.line()}",
            f"near-dup  cosine >= {self.threshold:g}: {self.groups_within} groups within train "
            f"({self.rows_in_groups_within} rows; {self.exact_duplicate_rows} rows repeat "
            "another's text exactly)",
        ]
        if self.eval:
            lines.append(f"leakage   {self.leaked_rows} of {self.eval_rows} eval rows "
                         f"({pct:.1f}%) have a near-twin in train ({self.leaked_exact} with "
                         f"identical vectors), in {self.groups_across} groups")
        for r in self.top_leaks.itertuples():
            lines.append(f"          {r.score:.3f}  {r.eval_text.strip()!r} ~ "
                         f"{r.train_text.strip()!r}")
        lines.append(f"labels    out-of-fold probabilities ({self.folds} folds) of {self.head} "
                     f"(chosen on the training folds, accuracy {100 * self.head_accuracy:.2f} "
                     f"against the given labels); confident learning flags "
                     f"{self.label_issues} rows")
        for r in self.top_issues.itertuples():
            lines.append(f"          {r.score:.3f}  {str(r.text).strip()!r}: {r.given_label} "
                         f"-> {r.suggested_label}")
        lines.append(f"map       {self.map_method} · {self.files['map']}")
        lines.append(f"wrote     {self.files['duplicates']} · {self.files['label_issues']} · "
                     f"{self.files['map']} ({self.seconds:.0f} s)")
        return "\n".join(lines)


def audit(store_path: str | Path | None, train: str | None = None,
          eval: str | None = None,  # noqa: A002
          *, label_col: str | None = None, out: dict[str, Path] | None = None,
          threshold: float | None = None, folds: int = 5, method: str = "auto", seed: int = 0,
          progress: bool = False, say: Say | None = None, pool: str = "mean",
          layers: Sequence[int] | None = None, of: str | None = None,
          layer_start: int | None = None, encoder: str | None = None,
          overwrite: bool = False) -> AuditResult:
    """Audit a labelled dataset (see the module docstring); writes the three files of `out`
    (default: `audit_paths(None, train, overwrite)`)."""
    start = time.perf_counter()
    say = say or (lambda message: None)
    threshold = DEFAULT_THRESHOLD if threshold is None else float(threshold)
    if not 0.0 <= threshold <= 1.0:
        raise HeadError(f"threshold must be a cosine between 0 and 1, got {threshold}")
    out = out or audit_paths(None, train, overwrite)
    root = default_store_path(store_path)
    train_name = dataset_for(root, train, encoder, progress=progress, say=say)
    eval_name = dataset_for(root, eval, encoder, progress=progress, say=say)
    store = open_store(root)
    train_name = train_name or default_training_dataset(store)
    plan = plan_evaluation(store, train_name, eval_name, None, label_col)
    layout = SearchLayout.resolve(store, pool, list(layers) if layers else None, of,
                                  layer_start, encoder)
    train_rows = plan.train
    eval_rows = plan.eval
    eval_dataset = plan.eval_name.split(":")[0] if plan.eval_name else None

    # near-duplicates and leakage
    search = NeighborSearch(store, train_name, layout, method, progress, say, rows=train_rows)
    report = search.prepare()
    corpus = search.corpus
    within_s, within_i = search.search(search.corpus_vectors(), NEIGHBORS_K,
                                       exclude=np.arange(len(corpus.keys)))
    eval_keys: list[str] = []
    across_s = np.zeros((0, 1), np.float32)
    across_i = np.zeros((0, 1), np.int64)
    if eval_rows is not None and eval_dataset is not None:
        eval_keys = list(dict.fromkeys(eval_rows[KEY_COLUMN].tolist()))
        layout.check(store, eval_keys, f"dataset {eval_dataset!r}")
        across_s, across_i = search.search(layout.vectors(store, eval_keys), NEIGHBORS_K)
    dup = _duplicates(corpus.keys, within_s, within_i, eval_keys, across_s, across_i,
                      threshold)
    dup_table = _duplicate_rows(dup, train_rows, eval_rows, plan.label_col,
                                store.manifest.datasets[train_name].text_column,
                                None if eval_dataset is None else
                                store.manifest.datasets[eval_dataset].text_column)

    # likely label errors
    oof = out_of_fold(store, plan, folds, seed, progress)
    issues = find_label_issues(oof.codes, oof.probs)
    text_col = store.manifest.datasets[train_name].text_column
    issue_table = issues.frame(oof.classes)
    issue_table.insert(0, "row", issue_table.pop("position"))
    issue_table.insert(1, "text", train_rows[text_col].to_numpy()[issue_table["row"]])
    issue_table.insert(0, "rank", np.arange(1, len(issue_table) + 1))

    # the map: one point per row, training rows first
    t_vec = search.corpus_vectors()[[corpus.position[k] for k in train_rows[KEY_COLUMN]]]
    labels = train_rows[plan.label_col].astype(str).to_numpy()
    n_eval = 0 if eval_rows is None else len(eval_rows)
    suspect = np.zeros(len(train_rows) + n_eval, dtype=bool)
    suspect[issues.rows] = True
    leaked = np.zeros(len(train_rows) + n_eval, dtype=bool)
    if eval_rows is not None:
        e_vec = layout.vectors(store, eval_rows[KEY_COLUMN].tolist())
        t_vec = np.concatenate([t_vec, e_vec])
        labels = np.concatenate([labels, eval_rows[plan.label_col].astype(str).to_numpy()])
        flagged = dup_table[(dup_table["set"] == "eval") & dup_table["leaked"]]["row"]
        leaked[len(train_rows) + flagged.to_numpy()] = True
    is_eval = np.arange(len(labels)) >= len(train_rows)
    say("drawing the map (t-SNE)")
    out["map"].parent.mkdir(parents=True, exist_ok=True)
    map_method = draw_map(t_vec, labels, is_eval, suspect, leaked, out["map"],
                          title=_title(train_name, eval_dataset, plan, layout), seed=seed)
    _write_csv(dup_table, out["duplicates"])
    _write_csv(issue_table, out["label_issues"])
    leaks = dup_table[(dup_table["set"] == "eval") & dup_table["leaked"]]
    near = leaks[leaks["score"] < 1.0 - 1e-6]  # the telling examples: twins, not copies
    top_leaks = (near if len(near) else leaks).sort_values("score", ascending=False).head(3)
    return AuditResult(
        train=train_name, eval=eval_dataset, label_col=plan.label_col,
        train_rows=len(train_rows), eval_rows=0 if eval_rows is None else len(eval_rows),
        threshold=threshold, layout=layout.describe(), search=report,
        groups_within=int(dup_table[dup_table["kind"] == "within train"]["group"].nunique()),
        rows_in_groups_within=int(
            ((dup_table["set"] == "train") & (dup_table["kind"] == "within train")).sum()),
        groups_across=int(dup_table[dup_table["kind"] == "across"]["group"].nunique()),
        leaked_rows=int(len(leaks)),
        leaked_exact=int((leaks["score"] >= 1.0 - 1e-6).sum()),
        exact_duplicate_rows=int(len(train_rows) - train_rows[KEY_COLUMN].nunique()),
        head=oof.head, head_accuracy=oof.accuracy, candidates=oof.tried, folds=folds,
        label_issues=len(issues), map_method=map_method,
        files={k: str(v) for k, v in out.items()}, seconds=time.perf_counter() - start,
        top_issues=issue_table.head(5),
        top_leaks=pd.DataFrame({"score": top_leaks["score"].to_numpy(),
                                "eval_text": top_leaks["text"].to_numpy(),
                                "train_text": top_leaks["twin"].to_numpy()}))


def _title(train: str, eval_name: str | None, plan: EvaluationPlan, layout: SearchLayout
           ) -> str:
    what = f"{train} ({len(plan.train)} rows)"
    if eval_name:
        what += f" + {eval_name} ({len(plan.eval)} rows)"  # type: ignore[arg-type]
    return f"{what} · {layout.describe()} vectors"


@dataclass
class _Groups:
    """Union-find over training texts (0..n-1) and evaluation texts (n..)."""

    group: np.ndarray
    best: np.ndarray  # each text's highest cosine to another member
    twin: np.ndarray  # the training text of that highest cosine (-1 none)
    n_train: int


def _duplicates(train_keys: list[str], ws: np.ndarray, wi: np.ndarray, eval_keys: list[str],
                es: np.ndarray, ei: np.ndarray, threshold: float) -> _Groups:
    n, m = len(train_keys), len(eval_keys)
    parent = np.arange(n + m)

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    best = np.full(n + m, -np.inf)
    twin = np.full(n + m, -1, dtype=np.int64)
    position = {k: i for i, k in enumerate(train_keys)}
    edges = [(i, int(j), float(s)) for i in range(n) for s, j in zip(ws[i], wi[i], strict=True)
             if j >= 0 and s >= threshold]
    for e, key in enumerate(eval_keys):
        if key in position:  # the very text is in training
            edges.append((n + e, position[key], 1.0))
        edges += [(n + e, int(j), float(s)) for s, j in zip(es[e], ei[e], strict=True)
                  if j >= 0 and s >= threshold]
    for a, b, s in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
        for x, y in ((a, b), (b, a)):
            if s > best[x]:
                best[x], twin[x] = s, y if y < n else -1
    roots = np.array([find(i) for i in range(n + m)])
    members = np.bincount(roots, minlength=n + m)
    in_group = members[roots] > 1
    return _Groups(np.where(in_group, roots, -1), best, twin, n)


def _duplicate_rows(g: _Groups, train: pd.DataFrame, ev: pd.DataFrame | None, label_col: str,
                    train_text: str, eval_text: str | None) -> pd.DataFrame:
    """duplicates.csv: one row per dataset row in a group of two or more rows (exact repeats
    within training included), with its group, set, row, text, label, highest cosine to another
    member and the training text of that cosine."""
    n = g.n_train
    train_pos = {k: i for i, k in enumerate(dict.fromkeys(train[KEY_COLUMN].tolist()))}
    t_idx = np.array([train_pos[k] for k in train[KEY_COLUMN]], dtype=np.int64)
    t_text = train[train_text].astype(str).to_numpy()
    first_text = {}
    for i, k in enumerate(t_idx.tolist()):
        first_text.setdefault(k, t_text[i])
    parts = [pd.DataFrame({"set": "train", "row": np.arange(len(train)), "node": t_idx,
                           "text": t_text, "label": train[label_col].astype(str).to_numpy()})]
    if ev is not None and eval_text is not None:
        eval_pos = {k: n + i for i, k in enumerate(dict.fromkeys(ev[KEY_COLUMN].tolist()))}
        parts.append(pd.DataFrame({"set": "eval", "row": np.arange(len(ev)),
                                   "node": [eval_pos[k] for k in ev[KEY_COLUMN]],
                                   "text": ev[eval_text].astype(str).to_numpy(),
                                   "label": ev[label_col].astype(str).to_numpy()}))
    rows = pd.concat(parts, ignore_index=True)
    # exact repeats inside training: a text on several rows is a group by itself
    repeats = rows[rows["set"] == "train"].groupby("node")["row"].transform("size") > 1
    group = g.group[rows["node"].to_numpy()]
    node = rows["node"].to_numpy()
    rows["group"] = np.where(group >= 0, group, np.where(repeats.reindex(rows.index,
                                                                         fill_value=False),
                                                         node, -1))
    rows = rows[rows["group"] >= 0].copy()
    best = g.best[rows["node"].to_numpy()]
    repeated = repeats.reindex(rows.index, fill_value=False).to_numpy()
    rows["score"] = np.round(np.where(repeated, 1.0, np.where(np.isfinite(best), best, 1.0)), 6)
    twins = g.twin[rows["node"].to_numpy()]
    rows["twin"] = [first_text.get(int(t), "") if t >= 0 else "" for t in twins]
    sets = rows.groupby("group")["set"].agg(lambda s: "across" if s.nunique() > 1
                                            else "within train" if s.iloc[0] == "train"
                                            else "within eval")
    rows["kind"] = rows["group"].map(sets)
    rows["leaked"] = (rows["set"] == "eval") & (rows["kind"] == "across")
    size = rows.groupby("group")["row"].transform("size")
    rows = rows.assign(size=size).sort_values(["size", "group", "set", "row"],
                                              ascending=[False, True, False, True])
    ids = {gid: i + 1 for i, gid in enumerate(dict.fromkeys(rows["group"].tolist()))}
    rows["group"] = rows["group"].map(ids)
    return rows[["group", "kind", "set", "row", "text", "label", "score", "twin", "leaked"]
                ].reset_index(drop=True)


@dataclass
class OutOfFold:
    """Each training row's class probabilities from the fold that held it out (columns:
    `classes`), its label codes, and the head they came from (chosen on the training folds)."""

    probs: np.ndarray
    classes: list[str]
    codes: np.ndarray
    head: str
    accuracy: float  # of the held-out predictions against the given labels
    tried: list[dict[str, Any]]


def out_of_fold(store: Store, plan: EvaluationPlan, folds: int = 5, seed: int = 0,
                progress: bool = False) -> OutOfFold:
    """Held-out probabilities of the plan's training rows under `folds`-fold stratified CV
    (the existing protocol, `run_protocol`), for each of CANDIDATES; the candidate whose
    held-out predictions agree best with the given labels is kept."""
    rows = plan.train.assign(**{POSITION: np.arange(len(plan.train))})
    cv = EvaluationPlan(rows, plan.train_name, plan.label_col, cv=folds,
                        protocol=f"{folds}-fold stratified CV", unit=TEXT)
    labels = LabelMap.fit(rows[plan.label_col])
    classes = [str(c) for c in labels.classes]
    codes = labels.encode(rows[plan.label_col], f"dataset {plan.train_name!r}")
    best: tuple[float, np.ndarray, str] | None = None
    tried = []
    bar = progress_bar(folds * len(CANDIDATES), "audit: out-of-fold heads", progress,
                       unit="fit")
    for params in CANDIDATES:
        name = " · ".join([str(params["pool"]), str(params["head"]),
                           *(f"{k} {v:g}" for k, v in params.items()
                             if k not in ("pool", "head"))])
        result = run_protocol(store, cv, dict(params), seed=seed, refit=False, progress=bar)
        probs = np.zeros((len(rows), len(classes)), dtype=np.float64)
        for head, (_, held) in zip(result.heads, trials(cv, "classification", None, 1, seed),
                                   strict=True):
            cols = [classes.index(str(c)) for c in head.classes_]  # type: ignore[attr-defined]
            probs[np.ix_(held[POSITION].to_numpy(), cols)] = head.predict_proba(  # type: ignore[attr-defined]
                store, held)
        acc = float(np.mean(probs.argmax(axis=1) == codes))
        tried.append({"head": name, "accuracy": round(acc, 6)})
        if best is None or acc > best[0]:
            best = (acc, probs, name)
    bar.close()
    assert best is not None
    return OutOfFold(best[1], classes, np.asarray(codes), best[2], best[0], tried)


def _write_csv(table: pd.DataFrame, path: Path) -> None:
    """Written beside, then renamed: a failed write never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        table.to_csv(tmp, index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
