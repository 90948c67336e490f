"""Predictions as a table, for a head of any unit: rows from a dataset, a file or plain texts,
any text the store lacks encoded first with the head's own encoder, then what the head's unit
prints per example (a text's row with its other columns, gold labels included; a sequence's
group), its prediction and class probabilities (all of them, or the top k)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from featstore.featurize.corpus import open_corpus
from featstore.heads.base import StoreHead
from featstore.heads.errors import HeadError
from featstore.heads.inputs import find_by_fingerprint
from featstore.heads.units import Unit, unit_of
from featstore.services.datasets import read_rows_file
from featstore.services.featurizing import Say
from featstore.services.head_sources import featurize_sources
from featstore.store import KEY_COLUMN, PAIR_KEY_COLUMNS, Store, clean_text

TEXT = "text"


@dataclass
class PredictInput:
    """Rows to predict (a `text` column first) and how many input rows had no text."""

    rows: pd.DataFrame
    skipped: int = 0


def input_rows(store: Store, value: str | None = None, text_col: str | None = None,
               texts: Sequence[str] = ()) -> PredictInput:
    """A `text` column plus every other column of the input: a dataset in the store, a corpus
    file, and/or plain texts (inline, or one per line on stdin). Rows without text are left out
    and counted."""
    return _text_rows(store, value, text_col, texts)


def prediction_input(store: Store, unit: Unit, value: str | None = None,
                     text_col: str | None = None, texts: Sequence[str] = (),
                     name: str = "the head", say: Say | None = None,
                     pairs: Sequence[tuple[str, str]] = ()) -> PredictInput:
    """The rows a head of `unit` predicts from: for texts, `input_rows`; for examples made of
    several texts (a sequence, a pair), a dataset or a file of rows as they are (and for pairs,
    `pairs` given inline), never lone texts; a file's rows without text in every text column
    are left out (as featurize leaves them out) and counted."""
    if unit.lone_texts:
        if pairs:
            raise HeadError(f"{name} is a per-text head: pass texts with --text (--text-a and "
                            "--text-b are for pair heads)")
        return input_rows(store, value, text_col, texts)
    if unit.name == "pair":
        if texts or value == "-":
            raise HeadError(f"{name} is a pair head: name a dataset or a file with columns "
                            f"{' and '.join(map(repr, unit.text_columns))}, or pass "
                            "--text-a A --text-b B (not --text or stdin)")
        if value is None and not pairs:
            raise HeadError("nothing to predict: name a dataset or file, or pass --text-a A "
                            "--text-b B")
    elif value is None or value == "-" or texts or pairs:
        raise HeadError(f"{name} is a {unit.name} head: name a dataset or a file of rows with "
                        "its group column (--text, stdin and --top-k are for per-text heads)")
    frames = []
    skipped = 0
    if value is not None:
        got = _example_rows(store, unit, value, say)
        frames.append(got.rows)
        skipped = got.skipped
    if pairs:
        cols = unit.text_columns
        kept = [p for p in pairs
                if clean_text(p[0]) is not None and clean_text(p[1]) is not None]
        if len(kept) < len(pairs):
            raise HeadError(f"{len(pairs) - len(kept)} pair(s) given inline have an empty side; "
                            "a pair needs both texts")
        frames.append(pd.DataFrame({cols[0]: [p[0] for p in kept],
                                    cols[1]: [p[1] for p in kept]}))
    rows = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if len(frames) > 1:
        rows = rows.drop(columns=[c for c in (KEY_COLUMN, *PAIR_KEY_COLUMNS)
                                  if c in rows.columns])
    return PredictInput(rows, skipped)


def _example_rows(store: Store, unit: Unit, value: str, say: Say | None) -> PredictInput:
    """A dataset's rows, or a file's rows with text in every text column of the unit."""
    if value in store.manifest.datasets:
        return PredictInput(store.dataset(value))
    rows = read_rows_file(value, "input")
    for column in unit.text_columns:
        if column not in rows.columns:
            raise HeadError(f"{value} has no {column!r} column (columns: "
                            f"{', '.join(map(str, rows.columns))})")
    has_text = np.ones(len(rows), dtype=bool)
    for column in unit.text_columns:
        has_text &= np.array([clean_text(v) is not None for v in rows[column].tolist()],
                             dtype=bool)
    skipped = int((~has_text).sum())
    if skipped:
        if say is not None:
            say(f"skipped {skipped} input row(s) without text")
        rows = rows[has_text].reset_index(drop=True)
        if rows.empty:
            raise HeadError(f"{value} has no texts in column {unit.text_columns[0]!r}")
    return PredictInput(rows, skipped)


def _text_rows(store: Store, value: str | None, text_col: str | None, texts: Sequence[str]
               ) -> PredictInput:
    frames, skipped = [], 0
    if value is not None:
        df, skipped = _rows_of(store, value, text_col)
        frames.append(df)
    if texts:
        kept = [t for t in texts if clean_text(t) is not None]
        skipped += len(texts) - len(kept)
        if not kept and not frames:
            raise HeadError("the given texts are all empty")
        frames.append(pd.DataFrame({TEXT: kept}))
    if not frames:
        raise HeadError("nothing to predict: name a dataset or file, pass --text, or pipe "
                        "texts on stdin with INPUT -")
    rows = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return PredictInput(rows, skipped)


def stdin_texts(stream: IO) -> list[str]:
    """One text per line of a byte (or text) stream, each line decoded as UTF-8 on its own, so
    an undecodable line is named; a byte order mark is not part of the first text."""
    raw = getattr(stream, "buffer", None)
    lines = raw if raw is not None else stream
    out = []
    for lineno, line in enumerate(lines, start=1):
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError:
                raise HeadError(f"stdin line {lineno} is not valid UTF-8") from None
        if lineno == 1:
            line = line.removeprefix("\ufeff")
        out.append(line.rstrip("\n").removesuffix("\r"))
    return out


def _rows_of(store: Store, value: str, text_col: str | None) -> tuple[pd.DataFrame, int]:
    skipped = 0
    if value in store.manifest.datasets:
        col = store.manifest.datasets[value].text_column
        df = store.dataset(value).drop(columns=[KEY_COLUMN])
    else:
        path = Path(value)
        if not path.is_file():
            raise HeadError(f"{value!r} is neither a dataset in store {store.root} nor a file")
        corpus = open_corpus(path, text_col)
        col = corpus.text_column
        df = pd.concat(list(corpus.chunks()), ignore_index=True)
        has_text = [clean_text(v) is not None for v in df[col].tolist()]
        skipped = len(df) - sum(has_text)
        df = df[has_text]
        if df.empty:
            raise HeadError(f"{path} has no texts in column {col!r}")
    if col != TEXT and TEXT in df.columns:  # another column already called `text`
        df = df.rename(columns={TEXT: _free_name(f"{TEXT}_given", df.columns)})
    df = df.rename(columns={col: TEXT}).reset_index(drop=True)
    df[TEXT] = df[TEXT].astype(str)
    return df[[TEXT, *(c for c in df.columns if c != TEXT)]], skipped


def _free_name(name: str, taken: Iterable[object]) -> str:
    """`name`, else `name_2`, `name_3`, ...: the first not in `taken`."""
    taken = {str(c) for c in taken}
    out, n = name, 1
    while out in taken:
        n += 1
        out = f"{name}_{n}"
    return out


def output_columns(head: StoreHead, top_k: int | None) -> list[str]:
    """The columns predict adds to a text head's input."""
    if head.task == "regression":
        return ["prediction"]
    classes = list(head.classes_)  # type: ignore[attr-defined]
    if top_k is None:
        return ["prediction", *(f"p_{c}" for c in classes)]
    k = min(top_k, len(classes))
    return ["prediction", *(f"{w}_{j + 1}" for j in range(k) for w in ("label", "p"))]


def keep_input_columns(rows: pd.DataFrame, added: Sequence[str]) -> tuple[pd.DataFrame,
                                                                         dict[str, str]]:
    """The input's columns that predict would overwrite, renamed NAME_given (NAME_given_2,
    ...): no input column is ever replaced. Returns the rows and {old: new}."""
    renamed: dict[str, str] = {}
    taken = {str(c) for c in rows.columns} | set(added)
    for c in rows.columns:
        if c != TEXT and str(c) in added:
            renamed[c] = _free_name(f"{c}_given", taken)
            taken.add(renamed[c])
    return (rows.rename(columns=renamed) if renamed else rows), renamed


def predict_frame(store: Store, head: StoreHead, rows: pd.DataFrame | Sequence[str],
                  progress: bool = False, say: Say | None = None, name: str = "the head",
                  top_k: int | None = None, laser_dir: str | None = None,
                  unit: Unit | None = None) -> pd.DataFrame:
    """What the head's unit prints per example of `rows` (texts, or a frame with a `text`
    column; a sequence head's rows): `prediction` and, for classifiers, `p_CLASS` per class,
    or with `top_k`, `label_1, p_1, ... label_K, p_K`; an input column of one of those names is
    kept as NAME_given. Texts the store lacks are encoded and stored first, with every source the
    head reads (its encoder, a fused encoder, LASER, found in `laser_dir`); texts an imported
    source lacks are refused before anything is encoded; a pair's joint encoding is the head's
    own to make. `unit`: the head's own unless given (a pair head reading other text columns)."""
    head.check_fitted()
    unit = unit or unit_of(head)
    out = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame({TEXT: list(rows)})
    if unit.name != "sequence":  # a row per example: its columns travel with its prediction
        out, renamed = keep_input_columns(out, output_columns(head, top_k))
        if renamed and say is not None:
            say("input column(s) " + ", ".join(f"{a!r} kept as {b!r}"
                                               for a, b in renamed.items())
                + " (predict writes those names)")
    texts = [] if KEY_COLUMN in out.columns else \
        [t for c in unit.text_columns if c in out.columns for t in out[c].astype(str)]
    layouts = [layout for layout in head.layouts_  # type: ignore[attr-defined]
               if layout.encoder_fingerprint.get("kind") != "cross"]  # the head encodes pairs
    for layout in layouts:
        find_by_fingerprint(store, layout.encoder_fingerprint, name)
    bound = [layout.bind(store) for layout in layouts]
    if texts:  # rows with keys were read from the store: it holds them
        featurize_sources(store, texts, [n for layout in bound for n in layout.needs()],
                          progress=progress, say=say, laser_dir=laser_dir)
    return unit.prediction_table(store, head, out, top_k)
