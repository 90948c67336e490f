"""The meaning matrix: what a column, a name, a model's files or a refusal's advice means, tried
over every command that depends on it. The damage matrix (test_guarantees_matrix.py) damages
bytes; here every byte stays valid and the meaning changes:

- column types (numeric, text, mixed, missing) x every command that orders, groups or keys rows;
- names (reserved, shadowing, one path spelled three ways) x every command that resolves one;
- the model's files changed before, during and after a run x every command that encodes;
- each refusal's advice, followed literally.

A case is correct (exactly the expected result: the same answer as the same data given with its
true types, the source a name should mean, vectors equal to what the model named by their
fingerprint computes), refused (where a refusal is expected: exit 2, one line, the store
unchanged), or mishandled (anything else). An advice case counts as followed when the refusal
names the advice and doing what it says then works. Each axis prints its counts and fails on any
mishandled case.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from conftest import build_tiny_model
from test_guarantees_support import (
    featurize_args,
    manifest,
    run_cli,
    tree_digest,
    write_corpus,
)

import featstore
from featstore.cli import main
from featstore.store import FeatstoreError, StoreWriter, keys_for

WORDS = ["card", "money", "bank", "transfer", "account", "help", "lost", "refund", "balance"]
TYPES = ("numeric", "text", "mixed", "missing")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("meaning-models")
    return {k: build_tiny_model("bert", root / k, seed=s) for k, s in (("A", 0), ("B", 1))}


def _python(call: Callable[[], object]) -> tuple[int, str, object]:
    """A Python call as a command: (0, "", value), or (2, the error line) for a FeatstoreError;
    anything else escaping is a traceback."""
    try:
        return 0, "", call()
    except FeatstoreError as exc:
        return 2, f"error: {exc}", None
    except Exception as exc:  # noqa: BLE001  anything else escaping the API is mishandled
        return 1, f"Traceback: {type(exc).__name__}: {exc}", None


def _one_line(err: str) -> bool:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    return len(lines) == 1 and lines[0].startswith("error: ")


def verdict(expected: str, code: int, err: str, value: object, want: object,
            unchanged: bool) -> str:
    if "Traceback" in err or "unexpected " in err:
        return "mishandled: traceback or unmapped error"
    if expected == "refused":
        if code == 2 and _one_line(err) and unchanged:
            return "refused"
        return f"mishandled: expected a one-line refusal, got exit {code}"
    if code != 0:
        return f"mishandled: refused a case that has an answer ({err.strip()[:120]})"
    return "correct" if value == want else "mishandled: a different result"


def report(axis: str, shape: str, outcomes: Counter, bad: list[str], capsys) -> None:
    with capsys.disabled():
        print(f"\nmeaning matrix, {axis}: {sum(outcomes.values())} cases ({shape}): "
              + ", ".join(f"{outcomes[k]} {k}" for k in ("refused", "correct", "followed")
                          if outcomes[k])
              + f", {outcomes['mishandled']} mishandled")
    assert not bad, "\n".join(bad)


# == axis 1: column types x commands that order, group or key =================================
@pytest.fixture(scope="module")
def typed(models, tmp_path_factory) -> dict:
    """Six conversations of eleven messages (shuffled rows). `ref.jsonl` holds them with true
    types (turn numbers as numbers); each o-TYPE.csv holds an order column of that type, each
    g-TYPE.csv a group column of that type, each k-TYPE.csv a text column of that type. All are
    featurized; head `seq` (the last message of each conversation by `o`) is fitted on ref."""
    root = tmp_path_factory.mktemp("typed")
    rng = np.random.default_rng(0)
    rows = [{"g": f"conv-{c}", "o": t, "c": c, "t": t,
             "text": f"{WORDS[(c * 5 + t) % 9]} {c} {t} {'x' * t}",
             "label": "pos" if c % 2 else "neg"} for c in range(6) for t in range(11)]
    df = pd.DataFrame(rows).iloc[rng.permutation(len(rows))].reset_index(drop=True)
    df[["g", "o", "text", "label"]].to_json(root / "ref.jsonl", orient="records", lines=True)
    first = {int(c): i for i, c in reversed(list(enumerate(df["c"])))}  # a row of each
    order = {"numeric": df["t"].astype(str), "text": df["t"].map(lambda t: chr(97 + t)),
             "mixed": df["t"].astype(str).where(df.index != first[0], "later"),
             "missing": df["t"].astype(str).where(df.index != first[0], "")}
    group = {"numeric": df["c"].map(lambda c: str(c + 1)), "text": df["g"],
             "mixed": df["c"].map(lambda c: str(c + 1) if c % 2 == 0 else f"conv-{c}"),
             "missing": df["g"].where(df.index != first[1], "")}
    n = 12
    key_texts = {"numeric": [str(1000 + 7 * i) for i in range(n)],
                 "text": [f"plain text {WORDS[i % 9]} {i}" for i in range(n)],
                 "mixed": [str(500 + i) if i % 2 else f"word {i}" for i in range(n)],
                 "missing": ["" if i % 4 == 0 else f"kept text {i}" for i in range(n)]}
    for kind in TYPES:
        df.assign(o=order[kind])[["g", "o", "text", "label"]].to_csv(root / f"o-{kind}.csv",
                                                                  index=False)
        df.assign(g=group[kind])[["g", "o", "text", "label"]].to_csv(root / f"g-{kind}.csv",
                                                                  index=False)
        pd.DataFrame({"g": group[kind], "label": df["label"]}).drop_duplicates("g").to_csv(
            root / f"labels-{kind}.csv", index=False)
        pd.DataFrame({"text": key_texts[kind], "label": ["a", "b"] * (n // 2)}
                     ).to_csv(root / f"k-{kind}.csv", index=False)
    store = root / "store"
    for f in ["ref.jsonl", *(f"{a}-{k}.csv" for a in "ogk" for k in TYPES)]:
        assert main(featurize_args(root / f, store, models["A"])) == 0, f
    seq = ["--group-by", "g", "--order-by", "o", "--seq-head", "last", "--cv", "2"]
    assert main(["fit-head", "--store", str(store), "--train", "ref", *seq, "--out", "seq",
                 "--no-progress"]) == 0
    assert main(["fit-head", "--store", str(store), "--train", "k-text", "--cv", "2", "--C",
                 "1", "--out", "per-text", "--no-progress"]) == 0
    return {"root": root, "store": store, "seq": seq, "key_texts": key_texts}


def _fit_metrics(capsys, store: Path, train: str, seq: list[str], out: str,
                 extra: tuple = ()) -> tuple[int, str, object]:
    code, stdout, err = run_cli(capsys, "fit-head", "--store", store, "--train", train, *seq,
                                "--json", "--no-progress", "--out", out, "--overwrite", *extra)
    return code, err, json.loads(stdout)["metrics"] if code == 0 else None


def _leaderboard(capsys, store: Path, train: str, plot: Path) -> tuple[int, str, object]:
    code, stdout, err = run_cli(capsys, "compare", "--store", store, "--train", train,
                                "--group-by", "g", "--order-by", "o", "--seq-heads", "last",
                                "--cv", "2", "--json", "--no-progress", "--plot", plot,
                                "--overwrite")
    return code, err, ([(e["name"], e["accuracy"]) for e in json.loads(stdout)["leaderboard"]]
                       if code == 0 else None)


def _seq_predictions(capsys, store: Path, source: str) -> tuple[int, str, object]:
    code, out, err = run_cli(capsys, "predict", "--store", store, "--head", "seq", source,
                             "--json", "--no-progress")
    if code:
        return code, err, None
    return code, err, [(str(r["g"]), r["messages"], r["p_pos"])
                       for r in json.loads(out)["predictions"]]


def _sequence_proba(store: Path, frame: pd.DataFrame) -> list:
    from featstore.heads.sequence_estimator import SequenceClassifier

    s = featstore.open(store)
    return np.round(SequenceClassifier.load(s, "seq").predict_proba(s, frame), 6).tolist()


def test_column_types_x_commands(capsys, typed):
    store, root, seq = typed["store"], typed["root"], typed["seq"]
    outcomes: Counter = Counter()
    bad: list[str] = []
    commands: set[str] = set()

    def record(axis: str, kind: str, command: str, expected: str,
               run: Callable[[], tuple[int, str, object]], want: object) -> None:
        digest = tree_digest(store)
        code, err, value = run()
        v = verdict(expected, code, err, value, want, tree_digest(store) == digest)
        outcomes[v.split(":")[0]] += 1
        commands.add(f"{axis}: {command}")
        if v.startswith("mishandled"):
            bad.append(f"{axis} {kind} / {command}: {v} ({err.strip()[:160]})")

    # what the true-typed data (ref.jsonl: numbers as numbers) gives
    ref_fit = _fit_metrics(capsys, store, "ref", seq, "fit-ref")[2]
    ref_board = _leaderboard(capsys, store, "ref", root / "cmp-ref.png")[2]
    ref_pred = _seq_predictions(capsys, store, "ref")[2]
    ref_proba = _sequence_proba(store, pd.read_json(root / "ref.jsonl", lines=True))
    assert ref_fit and ref_board and ref_pred and ref_proba
    for kind in TYPES:  # the order column: numbers order numerically, words as text
        expected = "correct" if kind in ("numeric", "text") else "refused"
        data, path = f"o-{kind}", root / f"o-{kind}.csv"
        record("order", kind, "fit-head --order-by", expected,
               lambda d=data: _fit_metrics(capsys, store, d, seq, f"fit-{d}"), ref_fit)
        record("order", kind, "compare --order-by", expected,
               lambda d=data: _leaderboard(capsys, store, d, root / f"cmp-{d}.png"), ref_board)
        record("order", kind, "predict dataset", expected,
               lambda d=data: _seq_predictions(capsys, store, d), ref_pred)
        record("order", kind, "predict file", expected,
               lambda p=path: _seq_predictions(capsys, store, str(p)), ref_pred)
        record("order", kind, "SequenceClassifier (pandas-typed frame)", expected,
               lambda p=path: _python(lambda: _sequence_proba(store, pd.read_csv(p))),
               ref_proba)
    for kind in TYPES:  # the group column: any values group, a missing one is refused
        expected = "refused" if kind == "missing" else "correct"
        data, path = f"g-{kind}", root / f"g-{kind}.csv"
        cells = pd.read_csv(path, dtype=str, keep_default_na=False)["g"]
        want_pred = [(g, m, p) for g, (_, m, p) in zip(dict.fromkeys(cells), ref_pred,
                                                        strict=False)]
        record("group", kind, "fit-head --group-by", expected,
               lambda d=data: _fit_metrics(capsys, store, d, seq, f"fit-{d}"), ref_fit)
        record("group", kind, "predict dataset", expected,
               lambda d=data: _seq_predictions(capsys, store, d), want_pred)
        record("group", kind, "predict file", expected,
               lambda p=path: _seq_predictions(capsys, store, str(p)), want_pred)
        labels = ("--labels", root / f"labels-{kind}.csv")
        record("group", kind, "fit-head --labels FILE keyed by group", expected,
               lambda d=data, extra=labels: _fit_metrics(capsys, store, d, seq, f"lab-{d}",
                                                         extra), ref_fit)
    for kind in TYPES:  # the text column: each cell keyed as its text; no text: skipped
        texts = typed["key_texts"][kind]
        kept = [x for x in texts if x.strip()]
        record("key", kind, "featurize", "correct",
               lambda k=kind: (0, "", (featstore.open(store).dataset(f"k-{k}")["_key"].tolist(),
                                       featstore.open(store).manifest.datasets[f"k-{k}"]
                                       .skipped)),
               (keys_for(kept), len(texts) - len(kept)))
        vectors = root / f"v-{kind}.csv"
        pd.DataFrame({"text": texts, "v0": np.arange(len(texts), dtype=float) + 1,
                      "v1": 2.0}).to_csv(vectors, index=False)

        def imported(k: str = kind, v: Path = vectors, kept: list = kept) -> tuple:
            code, _, err = run_cli(capsys, "import-vectors", "--store", store, "--name",
                                   f"v-{k}", v, "--no-progress")
            return code, err, (featstore.open(store).features(kept, f"v-{k}").tolist()
                               if code == 0 else None)

        record("key", kind, "import-vectors by text", "correct", imported,
               [[float(i + 1), 2.0] for i, x in enumerate(texts) if x.strip()])

        def predicted(k: str = kind) -> tuple:
            code, out, err = run_cli(capsys, "predict", "--store", store, "--head", "per-text",
                                     root / f"k-{k}.csv", "--json", "--no-progress")
            doc = json.loads(out) if code == 0 else None
            return code, err, ([r["text"] for r in doc["predictions"]], doc.get("skipped")
                               ) if doc else None

        record("key", kind, "predict file", "correct", predicted,
               (kept, len(texts) - len(kept)))
    report("column types", f"{len(TYPES)} types x {len(commands)} commands that order, group "
           "or key rows", outcomes, bad, capsys)


# == axis 2: names x commands that resolve them ==============================================
RESERVED = ("laser", "encoder", "vectors")
FEATURE_NAMES = ("cls", "mean", "max", "pooler", "tokens", "vector")


@pytest.fixture(scope="module")
def named(models, tmp_path_factory) -> dict:
    """A store with one encoder (model directory mA, under the module's root) and vectors
    imported as `ext`; names are tried from that root, so `mA` and `./mA/` name the model."""
    root = tmp_path_factory.mktemp("named")
    model = shutil.copytree(models["A"], root / "mA")
    texts = [f"{WORDS[i % 9]} {WORDS[i * 4 % 9]} name {i}" for i in range(24)]
    corpus = write_corpus(root / "c.csv", texts, [["x", "y"][i % 2] for i in range(24)])
    store = root / "store"
    assert main(featurize_args(corpus, store, model)) == 0
    rng = np.random.default_rng(0)
    pd.DataFrame({"text": texts, **{f"v{j}": rng.normal(size=24) for j in range(6)}}
                 ).to_csv(root / "ext.csv", index=False)
    assert main(["import-vectors", "--store", str(store), "--name", "ext", str(root / "ext.csv"),
                 "--no-progress"]) == 0
    pd.DataFrame({"text": texts, **{f"w{j}": rng.normal(size=24) for j in range(3)}}
                 ).to_csv(root / "other.csv", index=False)
    s = featstore.open(store)
    enc = next(k for k, e in s.manifest.encoders.items() if e.fingerprint["kind"] == "encoder")
    ext = next(k for k in s.manifest.encoders if k != enc)
    names = [*RESERVED, *FEATURE_NAMES, enc, "ext", "mA", "./mA/", str(model)]
    return {"root": root, "store": store, "corpus": corpus, "texts": texts, "enc": enc,
            "ext": ext, "names": names, "model": model}


def _means(n: dict, name: str) -> str | None:
    """What a name should mean: the encoder ("E"), the imported source ("X"), or nothing."""
    if name in (n["enc"], "mA", "./mA/", str(n["model"])):
        return "E"
    return "X" if name == "ext" else None


def test_names_x_commands_that_resolve_them(capsys, named, monkeypatch):
    root, store = named["root"], named["store"]
    monkeypatch.chdir(root)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a name taken for a hub id fails at once
    s = featstore.open(store)
    rows = {"E": {f: s.gather(named["enc"], keys_for(named["texts"]), f, -1).tolist()
                  for f in ("cls", "mean", "max", "pooler")},
            "X": s.gather(named["ext"], keys_for(named["texts"]), "vector").tolist()}
    fingerprints = {"E": s.encoder_entry(named["enc"]).fingerprint,
                    "X": s.encoder_entry(named["ext"]).fingerprint}
    outcomes: Counter = Counter()
    bad: list[str] = []
    resolvers: dict[str, Callable[[str, int], tuple[str, object, tuple[int, str, object]]]] = {}

    def resolver(fn):
        resolvers[fn.__name__.replace("_", " ")] = fn
        return fn

    @resolver
    def import_vectors_name(name, i):  # every one of these names is taken or reserved
        code, _, err = run_cli(capsys, "import-vectors", "--store", store, "--name", name,
                               root / "other.csv", "--no-progress")
        return "refused", None, (code, err, None)

    @resolver
    def features_kind(name, i):  # a feature the encoder stores, a source kind, a source name
        if name in ("cls", "mean", "max", "pooler"):
            expected, want = "correct", rows["E"][name]
        elif name in ("ext", "vectors"):  # `vectors` is the kind of the only imported source
            expected, want = "correct", rows["X"]
        else:
            expected, want = "refused", None
        return expected, want, _python(lambda: featstore.open(store).features(
            "c", name, -1).tolist())

    @resolver
    def features_mean_of_encoder(name, i):
        means = _means(named, name)
        return ("correct" if means == "E" else "refused", rows["E"]["mean"],
                _python(lambda: featstore.open(store).features("c", "mean", -1,
                                                               encoder=name).tolist()))

    @resolver
    def fit_head_fuse(name, i):
        means = "X" if name == "vectors" else _means(named, name)
        code, out, err = run_cli(capsys, "fit-head", "--store", store, "--fuse", name, "--cv",
                                 "2", "--C", "1", "--json", "--no-progress", "--out", f"f{i}")
        got = json.loads((store / "heads" / f"f{i}" / "head.json").read_text())["sources"][0][
            "fingerprint"] if code == 0 else None
        return ("correct" if means else "refused", fingerprints.get(means), (code, err, got))

    @resolver
    def fit_head_model(name, i):
        means = _means(named, name)
        code, out, err = run_cli(capsys, "fit-head", "--store", store, "--model", name, "--cv",
                                 "2", "--C", "1", "--json", "--no-progress", "--out", f"m{i}")
        return ("correct" if means == "E" else "refused", named["enc"],
                (code, err, json.loads(out)["encoder"] if code == 0 else None))

    @resolver
    def featurize_model(name, i):  # a path spelling is the stored encoder; an id is no model
        code, out, err = run_cli(capsys, *featurize_args(named["corpus"], store, name, "--json"))
        spelled = name in ("mA", "./mA/", str(named["model"]))
        got = (json.loads(out)["encoder_id"], json.loads(out)["new"]) if code == 0 else None
        return "correct" if spelled else "refused", (named["enc"], 0), (code, err, got)

    for i, name in enumerate(named["names"]):
        for label, fn in resolvers.items():
            digest = tree_digest(store)
            expected, want, (code, err, value) = fn(name, i)
            changed = tree_digest(store) != digest
            v = verdict(expected, code, err, value, want, not changed)
            outcomes[v.split(":")[0]] += 1
            if v.startswith("mishandled"):
                bad.append(f"name {name!r} / {label}: {v} ({err.strip()[:160]})")
    report("names", f"{len(named['names'])} names (reserved kinds, features, an id, an "
           f"imported name, one path spelled three ways) x {len(resolvers)} commands that "
           "resolve them", outcomes, bad, capsys)


# == axis 3: the model's files changed before, during and after a run ========================
WHENS = ("before", "during", "after")
ROW_TOLERANCE = 0.02  # float16 rounding and batch padding; A's and B's rows differ by ~1


@pytest.fixture(scope="module")
def changing(models, tmp_path_factory) -> dict:
    """A store made with model directory `m` (A's files), a head on it, and each model's
    stored rows for every text the cases use, by the SHA-256 of its weights."""
    root = tmp_path_factory.mktemp("changing")
    model = shutil.copytree(models["A"], root / "m")
    texts = {k: [f"{WORDS[i % 9]} {k} {i} {'y' * (i % 3)}" for i in range(n)]
             for k, n in (("base", 16), ("new", 6), ("train", 12), ("py", 4))}
    labels = [["x", "y"][i % 2] for i in range(16)]
    store = root / "template"
    assert main(featurize_args(write_corpus(root / "base.csv", texts["base"], labels), store,
                               model)) == 0
    assert main(["fit-head", "--store", str(store), "--cv", "2", "--C", "1", "--out", "h",
                 "--no-progress"]) == 0
    write_corpus(root / "new.csv", texts["new"])
    write_corpus(root / "train.csv", texts["train"], labels[:12])
    everything = [t for v in texts.values() for t in v] + ["a text to predict"]
    refs = {}
    for name, path in models.items():
        ref = root / f"ref-{name}"
        assert main(featurize_args(write_corpus(root / f"all-{name}.csv", everything), ref,
                                   path)) == 0
        s = featstore.open(ref)
        (enc,) = s.manifest.encoders.values()
        refs[enc.fingerprint["weights_sha256"]] = dict(zip(
            keys_for(everything), s.features(everything, "mean", None).tolist(), strict=True))
    a, b = (np.array(list(r.values())) for r in refs.values())
    assert np.abs(a - b).max() > 10 * ROW_TOLERANCE  # a row filed under the other is caught
    return {"root": root, "model": model, "template": store, "texts": texts, "refs": refs}


def _consistent(store: Path, refs: dict) -> str:
    """Every stored row equals what the model named by its fingerprint computes."""
    s = featstore.open(store)
    if s.verify():
        return "damaged"
    for enc_id, e in s.manifest.encoders.items():
        ref = refs.get(e.fingerprint.get("weights_sha256"))
        if ref is None:
            return f"encoder {enc_id} names weights no model has"
        keys = list(s.index(enc_id, "mean"))
        got = s.gather(enc_id, keys, "mean", None).astype(np.float32)
        want = np.array([ref[k] for k in keys], dtype=np.float32)
        # padding in other batches moves a value by rounding; the other model's by ~1
        if np.abs(got - want).max() > ROW_TOLERANCE:
            return f"encoder {enc_id} holds rows its weights do not compute"
    return "consistent"


def test_model_files_changed_before_during_after_x_commands(capsys, changing, models,
                                                            monkeypatch, tmp_path):
    from transformers import AutoModel

    from featstore.featurize import encoder as encoder_mod

    c = changing
    model, weights = c["model"], c["model"] / "model.safetensors"

    def put(which: str) -> None:
        shutil.copy(models[which] / "model.safetensors", model / "w.tmp")
        (model / "w.tmp").replace(weights)

    real_load = AutoModel.from_pretrained.__func__
    real_forward = encoder_mod.Encoder.forward

    def arm(when: str) -> None:
        """Make B's weights appear at `when`, relative to the model being loaded."""
        if when == "before":
            put("B")
            return
        if when == "during":
            def load(cls, *args, **kwargs):
                out = real_load(cls, *args, **kwargs)
                put("B")
                return out
            monkeypatch.setattr(AutoModel, "from_pretrained", classmethod(load))
            return

        def forward(self, *args, **kwargs):  # the model is in memory, encoding under way
            if weights.read_bytes() != (models["B"] / "model.safetensors").read_bytes():
                put("B")
            return real_forward(self, *args, **kwargs)
        monkeypatch.setattr(encoder_mod.Encoder, "forward", forward)

    commands = {
        "featurize": lambda s: run_cli(capsys, *featurize_args(c["root"] / "new.csv", s,
                                                               model))[::2],
        "predict (new text)": lambda s: run_cli(capsys, "predict", "--store", s, "--head", "h",
                                                "--text", "a text to predict",
                                                "--no-progress")[::2],
        "fit-head --train FILE": lambda s: run_cli(capsys, "fit-head", "--store", s, "--train",
                                                   c["root"] / "train.csv", "--cv", "2", "--C",
                                                   "1", "--out", "t", "--no-progress")[::2],
        "Store.featurize(texts)": lambda s: _python(
            lambda: featstore.open(s).featurize(c["texts"]["py"]))[:2],
    }
    # what must happen: a run computes with the files it loaded and says so in the
    # fingerprint; one that must reproduce the store's encoder refuses other weights
    expect = {("featurize", "before"): "correct", ("featurize", "after"): "correct"}
    outcomes: Counter = Counter()
    bad: list[str] = []
    for when in WHENS:
        for name, run in commands.items():
            monkeypatch.undo()
            monkeypatch.setenv("FEATSTORE_CACHE_DIR", str(tmp_path / f"cache-{when}-{name}"))
            put("A")
            store = tmp_path / f"{when}-{name}".replace(" ", "_").replace("/", "_")
            shutil.copytree(c["template"], store)
            digest = tree_digest(store)
            arm(when)
            code, err = run(store)
            expected = expect.get((name, when), "correct" if when == "after" else "refused")
            v = verdict(expected, int(code), str(err), _consistent(store, c["refs"]),
                        "consistent", tree_digest(store) == digest)
            outcomes[v.split(":")[0]] += 1
            if v.startswith("mishandled"):
                bad.append(f"{name} / files changed {when} loading: {v} ({str(err)[:160]})")
    monkeypatch.undo()
    put("A")
    report("model files", f"{len(WHENS)} times (before, during, after loading) x "
           f"{len(commands)} commands that encode", outcomes, bad, capsys)


# == axis 4: each refusal's advice, followed literally =======================================
@pytest.fixture(scope="module")
def advised(models, tmp_path_factory) -> dict:
    """A template store (model directory mA, dataset c, head h, imported vectors ext) and the
    files the cases use."""
    root = tmp_path_factory.mktemp("advised")
    model = shutil.copytree(models["A"], root / "mA")
    texts = [f"{WORDS[i % 9]} {WORDS[i * 2 % 9]} advice {i}" for i in range(24)]
    labels = [["x", "y"][i % 2] for i in range(24)]
    corpus = write_corpus(root / "c.csv", texts, labels)
    store = root / "template"
    assert main(featurize_args(corpus, store, model)) == 0
    assert main(["fit-head", "--store", str(store), "--cv", "2", "--C", "1", "--out", "h",
                 "--no-progress"]) == 0
    rng = np.random.default_rng(0)
    vectors = pd.DataFrame({"text": texts, **{f"v{j}": rng.normal(size=24) for j in range(4)}})
    vectors.to_csv(root / "ext.csv", index=False)
    vectors.iloc[:12].to_csv(root / "half.csv", index=False)
    vectors.assign(v0=vectors["v0"] + 1).to_csv(root / "ext2.csv", index=False)
    assert main(["import-vectors", "--store", str(store), "--name", "ext",
                 str(root / "ext.csv"), "--no-progress"]) == 0
    write_corpus(root / "other.csv", ["a text of another file", "and one more"], ["x", "y"])
    write_corpus(root / "new.csv", [f"a new advice text {i}" for i in range(4)])
    return {"root": root, "model": model, "template": store, "corpus": corpus, "texts": texts}


class Holder:
    """Another writer holding the store's lock (a thread: flock excludes it) for `seconds`, or
    until `release()` when None, so a slow machine cannot reach the lock after it is free."""

    def __init__(self, store: Path, seconds: float | None) -> None:
        self.store, self.seconds = store, seconds
        self.ready, self.released = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._hold, daemon=True)
        self.thread.start()
        self.ready.wait(10)

    def _hold(self) -> None:
        with StoreWriter(self.store):
            self.ready.set()
            self.released.wait(self.seconds)

    def release(self) -> None:
        self.released.set()
        self.thread.join()


def _backticked(line: str) -> list[str]:
    """The command an advice spells out between backticks, as argv (no leading `featstore`)."""
    (command,) = re.findall(r"`([^`]+)`", line)[:1]
    words = shlex.split(command)
    return words[1:] if words[0] == "featstore" else words


def _flip(path: Path, dataset: str | None = None) -> None:
    raw = bytearray(path.read_bytes())
    if dataset is None:
        at = len(raw) // 2
    else:
        with h5py.File(path, "r") as f:
            at = f[dataset].id.get_chunk_info(0).byte_offset + 5
    raw[at] ^= 0x10
    path.write_bytes(bytes(raw))


def _advice_cases(a: dict) -> dict[str, dict]:  # noqa: C901  one entry per case, on purpose
    """name -> {setup, refused: argv or callable, says: text the refusal must hold,
    follow: argv (or callable) built from what it says, then: check after following}."""
    root, corpus, model = a["root"], a["corpus"], str(a["model"])
    fit = ["fit-head", "--cv", "2", "--C", "1", "--no-progress"]
    cases: dict[str, dict] = {}

    def case(name: str, refused, says: str, follow, setup=None, then=None) -> None:
        cases[name] = {"refused": refused, "says": says, "follow": follow, "setup": setup,
                       "then": then}

    def add(*flags: str):
        return lambda argv, line, ctx: [*argv, *flags]

    def drop(*flags: str):
        return lambda argv, line, ctx: [w for w in argv if w not in flags]

    def swap(old: str, new: str):
        return lambda argv, line, ctx: [new if w == old else w for w in argv]

    other = ["featurize", root / "other.csv", "--model", model, "--name", "c", "--no-laser",
             "--no-progress"]
    case("featurize: dataset name taken, --replace", other, "or --replace", add("--replace"))
    case("featurize: dataset name taken, --name NEW", other, "pass --name NEW",
         swap("c", "c2"))
    case("fit-head: head exists, --overwrite", [*fit, "--out", "h"], "pass --overwrite",
         add("--overwrite"))
    case("fit-head: head exists, --out NAME", [*fit, "--out", "h"], "(--out NAME)",
         swap("h", "h2"))
    case("probe-layers: chart exists", ["probe-layers", "--cv", "2", "--plot", "CASE/p.png",
                                        "--no-progress"], "pass --overwrite",
         add("--overwrite"), setup=lambda ctx: (ctx["case"] / "p.png").write_text("x"))

    def report_dir(ctx):
        (ctx["case"] / "rep").mkdir()
        (ctx["case"] / "rep" / "classes.csv").write_text("mine")

    case("fit-head: report files exist", [*fit, "--out", "r", "--report", "CASE/rep"],
         "pass --overwrite", add("--overwrite"), setup=report_dir)
    predict = ["predict", "--head", "h", "c", "--no-progress"]
    case("predict: --out exists", [*predict, "--out", "CASE/p.csv"], "pass --overwrite",
         add("--overwrite"), setup=lambda ctx: (ctx["case"] / "p.csv").write_text("mine"))
    case("predict: --out extension names no format", [*predict, "--out", "CASE/p.txt"],
         "or pass --format", add("--format", "csv"))
    case("predict: --format contradicts --out", [*predict, "--out", "CASE/p.jsonl",
                                                 "--format", "csv"], "drop --format",
         drop("--format", "csv"))
    case("predict: --overwrite without --out", [*predict, "--overwrite"], "it needs --out",
         add("--out", "CASE/new.csv"))
    case("predict: --json with --out", [*predict, "--json", "--out", "CASE/x.csv"],
         "does not combine", drop("--json"))
    lock = {"setup": lambda ctx: ctx.update(holder=Holder(ctx["store"], None))}
    case("featurize: store locked", ["featurize", root / "new.csv", "--model", model,
                                     "--no-laser", "--no-progress"], "pass --wait",
         lambda argv, line, ctx: (ctx.update(holder=Holder(ctx["store"], 1.5)),
                                  [*argv, "--wait"])[1], **lock)
    case("repair: store locked", ["repair"], "pass --wait",
         lambda argv, line, ctx: (ctx.update(holder=Holder(ctx["store"], 1.5)),
                                  [*argv, "--wait"])[1], **lock)
    case("import-vectors: store locked", ["import-vectors", "--name", "v2", root / "ext2.csv",
                                          "--no-progress"], "pass --wait",
         lambda argv, line, ctx: (ctx.update(holder=Holder(ctx["store"], 1.5)),
                                  [*argv, "--wait"])[1], **lock)
    texts = [f"python side text {i}" for i in range(3)]
    case("Store.featurize: store locked",
         lambda ctx: featstore.open(ctx["store"]).featurize(texts, model=model, laser=False),
         "wait=True in Python",
         lambda argv, line, ctx: (ctx.update(holder=Holder(ctx["store"], 1.5)), lambda c: (
             featstore.open(c["store"]).featurize(texts, model=model, laser=False,
                                                  wait=True)))[1], **lock)
    case("import-vectors: another file under a taken name",
         ["import-vectors", "--name", "ext", root / "ext2.csv", "--no-progress"],
         "pass --replace", add("--replace"))
    case("import-vectors: a reserved name", ["import-vectors", "--name", "mean",
                                             root / "ext2.csv", "--no-progress"],
         "choose another --name (e.g. mean-ext)",
         lambda argv, line, ctx: swap("mean", re.search(r"e\.g\. ([\w.-]+)\)", line)[1])(
             argv, line, ctx))

    def raw16(ctx):
        vecs = np.random.default_rng(1).uniform(-1, 1, size=(24, 8)).astype(np.float16)
        vecs[:, 1::2] = 0
        vecs.tofile(ctx["case"] / "e.raw")
        (ctx["case"] / "t.txt").write_text("\n".join(a["texts"]) + "\n")

    case("import-vectors: a float16 raw file", ["import-vectors", "--name", "l", "CASE/e.raw",
                                                "--texts", "CASE/t.txt", "--dim", "8"],
         "pass --fp16", add("--fp16"), setup=raw16)

    def tiny(ctx):
        pd.DataFrame({"text": a["texts"], "v0": 1e-9, "v1": 3e-9}).to_csv(
            ctx["case"] / "tiny.csv", index=False)

    case("import-vectors: values float16 flushes to zero",
         ["import-vectors", "--name", "t", "CASE/tiny.csv", "--dtype", "float16"],
         "pass --dtype float32", swap("float16", "float32"), setup=tiny)

    def by_key(ctx):
        frame = pd.DataFrame({"_key": keys_for(["never featurized one", "nor two"]),
                              "v0": [1.0, 2.0]})
        frame.to_csv(ctx["case"] / "keys.csv", index=False)
        frame.assign(text=["never featurized one", "nor two"]).drop(columns="_key").to_csv(
            ctx["case"] / "texts.csv", index=False)

    case("import-vectors: keys the store lacks", ["import-vectors", "--name", "k",
                                                  "CASE/keys.csv"], "or give texts instead",
         swap("CASE/keys.csv", "CASE/texts.csv"), setup=by_key)

    def run_advised(substitute: dict[str, str], then_argv=None):
        def follow(argv, line, ctx):
            words = [substitute.get(w, w) for w in _backticked(line)]
            code, _, err = run_cli(ctx["capsys"], *words)
            assert code == 0, err
            return then_argv or argv
        return follow

    case("fit-head: attention without token states", [*fit[:3], "--pool", "attention",
                                                      "--epochs", "2", "--no-progress"],
         "featurize --tokens CORPUS", run_advised({"CORPUS": str(corpus)}))

    def half(ctx):
        assert main(["import-vectors", "--store", str(ctx["store"]), "--name", "half",
                     str(root / "half.csv"), "--no-progress"]) == 0

    case("fit-head: fused source lacks texts", [*fit, "--fuse", "half", "--out", "fh"],
         "then fit the head again", run_advised({"FILE": str(root / "ext.csv")}), setup=half)

    def second_encoder(ctx):
        assert main(featurize_args(corpus, ctx["store"], model, "--max-length", "16")) == 0

    case("fit-head: several encoders", [*fit, "--out", "e"], "name one with --model",
         lambda argv, line, ctx: [*argv, "--model", re.search(r"\(([^,)]+)", line)[1]],
         setup=second_encoder)
    case("fit-head: a model matching several encoders", [*fit, "--out", "e", "--model", model],
         "name one by id", lambda argv, line, ctx: swap(model, re.search(
             r"\(([^,)]+)", line)[1])(argv, line, ctx), setup=second_encoder)

    def other_weights(ctx):
        shutil.copy(ctx["models"]["B"] / "model.safetensors", a["model"] / "model.safetensors")

    def restore(argv, line, ctx):
        shutil.copy(ctx["models"]["A"] / "model.safetensors", a["model"] / "model.safetensors")
        return argv

    case("predict: the head's model directory holds other weights",
         ["predict", "--head", "h", "--text", "a text to predict", "--no-progress"],
         "restore the model's files", restore, setup=other_weights)

    def relative(ctx):
        from featstore.featurize import encoder, sources
        from featstore.featurize.model_names import resolve_model

        def as_typed(m):  # an older featstore recorded the path as typed
            name, source = resolve_model(m)
            return ("mA", source) if m == "mA" else (name, source)

        rel = ctx["case"] / "rel"
        ctx["monkeypatch"].chdir(root)
        ctx["monkeypatch"].setattr(encoder, "resolve_model", as_typed)
        ctx["monkeypatch"].setattr(sources, "resolve_model", as_typed)
        assert main(featurize_args(corpus, rel, "mA")) == 0
        assert main(["fit-head", "--store", str(rel), "--cv", "2", "--C", "1", "--out", "h",
                     "--no-progress"]) == 0
        ctx["monkeypatch"].setattr(encoder, "resolve_model", resolve_model)
        ctx["monkeypatch"].setattr(sources, "resolve_model", resolve_model)
        ctx["store"] = rel
        ctx["monkeypatch"].chdir(ctx["case"])

    def go_back(argv, line, ctx):
        ctx["monkeypatch"].chdir(root)
        return argv

    case("predict: a relative model directory from elsewhere",
         ["predict", "--head", "h", "--text", "a text to predict", "--no-progress"],
         "run from the directory the store was featurized from", go_back, setup=relative)

    def damaged(kind: str):
        def setup(ctx):
            m = manifest(ctx["store"])
            ctx["before"] = featstore.open(ctx["store"]).features(
                "c", "ext" if kind == "ext" else "mean", None)
            if kind == "table":
                _flip(ctx["store"] / m["datasets"]["c"]["file"])
                return
            enc = next(k for k, e in m["encoders"].items()
                       if (e["fingerprint"]["kind"] == "vectors") == (kind == "ext"))
            _flip(ctx["store"] / m["encoders"][enc]["shards"][0]["file"],
                  "features/vector" if kind == "ext" else "features/mean")
        return setup

    def repair_then_advice(argv, line, ctx):
        code, out, err = run_cli(ctx["capsys"], "repair", "--store", ctx["store"])
        assert code == 0, err
        advice = [ln.split(": ", 1)[1] for ln in out.splitlines()[1:] if ": " in ln]
        assert advice, out
        for text in advice:
            words = shlex.split(text.split("): ", 1)[-1])
            words = [str(root / "ext.csv") if w == "FILE" else w for w in words]
            code, _, err = run_cli(ctx["capsys"], *(words[1:] if words[0] == "featstore"
                                                    else words))
            assert code == 0, err
        return lambda c: featstore.open(c["store"]).features(
            "c", "ext" if "ext" in line else "mean", None)

    def same_as_before(ctx, value):
        assert np.abs(np.asarray(value, dtype=np.float32)
                      - np.asarray(ctx["before"], dtype=np.float32)).max() < 0.02
        assert featstore.open(ctx["store"]).verify() == []

    for kind in ("encoder shard", "table", "ext"):
        read = (lambda k: lambda ctx: featstore.open(ctx["store"]).features(
            "c", "ext" if k == "ext" else "mean", None))(kind)
        case(f"read a damaged {kind}, repair, then what repair says", read,
             "featstore repair", repair_then_advice, setup=damaged(kind), then=same_as_before)
    auto = ["fit-head", "--auto", "--budget", "5", "--cv", "2", "--no-progress"]
    case("fit-head --auto with --pool", [*auto, "--pool", "mean-max"], "drop --pool",
         drop("--pool", "mean-max"))
    case("fit-head --budget without --auto", [*fit[:3], "--budget", "5", "--no-progress"],
         "add --auto", add("--auto"))
    case("compare --budget without --save-best",
         ["compare", "--cv", "2", "--pools", "mean", "--heads", "logreg", "--budget", "5",
          "--plot", "CASE/c.png", "--no-progress"], "add --save-best",
         add("--save-best", "best"))
    case("fit-head --of without a pooling that reads it", [*fit, "--of", "cls"],
         "applies to --pool concat", add("--pool", "concat"))
    case("fit-head --repeats without --shots", [*fit[:3], "--repeats", "2", "--C", "1",
                                                "--no-progress"], "it needs --shots",
         add("--shots", "4"))
    case("fit-head --fuse-mode project without --fuse",
         [*fit[:3], "--fuse-mode", "project", "--epochs", "2", "--no-progress"],
         "name them with --fuse", add("--fuse", "ext"))

    def second_dataset(ctx):
        assert main(featurize_args(root / "other.csv", ctx["store"], model)) == 0

    case("fit-head: several datasets", [*fit, "--out", "d"], "with --train",
         add("--train", "c"), setup=second_dataset)

    def two_text_columns(ctx):
        pd.DataFrame({"body": ["first body text", "second one"], "note": ["a b", "c d"]}
                     ).to_csv(ctx["case"] / "two.csv", index=False)

    case("featurize: which column is the text", ["featurize", "CASE/two.csv", "--model", model,
                                                 "--no-laser", "--no-progress"],
         "pass --text-col", add("--text-col", "body"), setup=two_text_columns)

    def no_datasets(ctx):
        fresh = ctx["case"] / "fresh"
        assert main(["import-vectors", "--store", str(fresh), "--name", "ext",
                     str(root / "ext.csv"), "--no-progress"]) == 0
        ctx["store"] = fresh

    case("fit-head: a store without datasets", [*fit, "--out", "n"], "featurize CORPUS --store",
         run_advised({"CORPUS": str(corpus)}), setup=no_datasets)
    return cases


def _run_advice_case(c: dict, ctx: dict) -> None:
    """Refused in one line naming the advice, the store unchanged; then the advice, done as
    it says, works. Raises AssertionError naming what did not hold."""
    capsys, case_dir = ctx["capsys"], ctx["case"]
    if c["setup"]:
        c["setup"](ctx)

    def here(words: list) -> list[str]:
        return [str(w).replace("CASE/", f"{case_dir}/") for w in words]

    digest = tree_digest(ctx["store"])
    argv: list = []
    if callable(c["refused"]):
        code, err, _ = _python(lambda: c["refused"](ctx))
    else:
        argv = [c["refused"][0], "--store", ctx["store"], *c["refused"][1:]]
        code, _, err = run_cli(capsys, *here(argv))
    if "holder" in ctx:
        ctx.pop("holder").release()
    line = err.strip().splitlines()[-1] if err.strip() else ""
    if not (code == 2 and _one_line(err) and c["says"] in line
            and tree_digest(ctx["store"]) == digest):
        raise AssertionError(f"the refusal: exit {code}, {err.strip()[:200]!r}")
    follow = c["follow"](argv, line, ctx)
    if callable(follow):
        code, err, value = _python(lambda: follow(ctx))
    else:
        code, value, err = run_cli(capsys, *here(follow))
    if "holder" in ctx:
        ctx.pop("holder").thread.join()
    assert code == 0, f"following the advice: exit {code}, {err.strip()[:200]!r}"
    if c["then"]:
        c["then"](ctx, value)


def test_every_refusals_advice_followed_works(capsys, advised, models, monkeypatch, tmp_path):
    outcomes: Counter = Counter()
    bad: list[str] = []
    cases = _advice_cases(advised)
    for i, (name, c) in enumerate(cases.items()):
        case_dir = tmp_path / f"case{i}"
        case_dir.mkdir()
        ctx = {"case": case_dir, "store": case_dir / "store", "capsys": capsys,
               "models": models, "monkeypatch": monkeypatch}
        shutil.copytree(advised["template"], ctx["store"])
        monkeypatch.chdir(case_dir)
        try:
            _run_advice_case(c, ctx)
            outcomes["followed"] += 1
        except AssertionError as exc:
            outcomes["mishandled"] += 1
            bad.append(f"{name}: {exc}")
        finally:
            monkeypatch.undo()
            monkeypatch.setenv("FEATSTORE_CACHE_DIR", str(tmp_path / "cache"))
            shutil.copy(models["A"] / "model.safetensors",
                        advised["model"] / "model.safetensors")
    report("advice", f"{len(cases)} refusals, each advice followed as written", outcomes, bad,
           capsys)
