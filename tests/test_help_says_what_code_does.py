"""Help texts and docs say what the code does: each flag's documented default is the parser's
(or, for a head's flags, the estimators' declared defaults), a default described in words is
checked against the code that decides it, the shortcut programs call themselves by their own
names, and refusals advise what applies to the case at hand."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
from test_heads_support import toy_store

from featstore.cli import build_parser, main
from featstore.heads.kinds import HEADS, default_head, default_pair_head
from featstore.heads.labels import LABEL_COLUMNS
from featstore.heads.names import head_name, text_head_what
from featstore.heads.params import DECLARED, HEAD_SELECTOR, SEQUENCE_HEAD, TEXT_HEAD
from featstore.selection.settings import (
    COMPARE_HEADS,
    COMPARE_POOLS,
    COMPARE_SEQ_HEADS,
    PROBE_C,
)
from featstore.services.audit import DEFAULT_THRESHOLD, audit_paths
from featstore.services.prediction_files import output_target
from featstore.store import default_store_path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = re.compile(r"\(default:? (.*)\)")


def documented_flags() -> list[tuple[str, argparse.Action, str]]:
    """(command, action, the documented default) for every flag whose help names one."""
    out = []

    def walk(parser: argparse.ArgumentParser, name: str) -> None:
        for a in parser._actions:
            if isinstance(a, argparse._SubParsersAction):
                for n, sub in a.choices.items():
                    walk(sub, f"{name} {n}".strip())
            elif a.option_strings and a.help and "default" in a.help:
                text = a.help.replace("%(default)s", str(a.default)).split("; one of:")[0]
                m = DEFAULT.search(text) or re.search(r"\(default ([^)]*)\)", text)
                assert m, f"{name} {a.option_strings[-1]}: unreadable default in {text!r}"
                out.append((name, a, m.group(1)))

    walk(build_parser(), "")
    return out


def shown(value: object) -> str:
    return " ".join(map(str, value)) if isinstance(value, list | tuple) else str(value)


def same_number(documented: str, value: float) -> bool:
    head = re.match(r"[-+]?\d+(\.\d+)?(e[-+]?\d+)?", documented)
    return head is not None and float(head.group(0)) == float(value)


# defaults written in words, and the code that decides each (checked where it is cheap)
IN_WORDS = {
    "--store": lambda d: "$FEATSTORE_DIR" in d and default_store_path(None) == Path("featstore")
    and "./featstore" in d,
    "--label-col": lambda d: d == ", ".join(LABEL_COLUMNS),
    "--head": lambda d: default_head("mean", "classification", "concat") == "logreg"
    and default_head("weighted", "classification", "concat") == "mlp"
    and default_pair_head("mean", "regression", "concat") == "ridge"
    and d == "logreg for fixed poolings, else mlp; on pairs, ridge for regression",
    "predict --out": lambda d: output_target(None, None) == (None, "csv")
    and d == "CSV on stdout",
    "probe-layers --C": lambda d: same_number(d, PROBE_C),
    "--out": lambda d: head_name("DATASET", text_head_what({}, "classification"))
    == "DATASET-mean-logreg" and "DATASET-POOL-HEAD" in d and "-fuse-" in d,
    "--pools": lambda d: d == " ".join(COMPARE_POOLS),
    "--heads": lambda d: d == " ".join(COMPARE_HEADS) and set(COMPARE_HEADS) <= set(HEADS),
    "--seq-heads": lambda d: d == " ".join(COMPARE_SEQ_HEADS),
    "--C": lambda d: DECLARED["C"].default is None and "inner CV" in d,
    "--budget": lambda d: same_number(d, HEAD_SELECTOR["budget"].default),
    "--threshold": lambda d: same_number(d.split(",")[0], DEFAULT_THRESHOLD),
    "audit --out": lambda d: d == "audit-DATASET"
    and audit_paths(None, "b77", True)["map"].parent == Path("audit-b77"),
}
# described in words only: what decides them lives with the data or the machine
PROSE = {"--model", "--name", "--text-col", "--max-length", "--stride", "--features",
         "--laser", "--no-laser", "--laser-dir", "--batch-tokens", "--address", "--workers",
         "--vector-cols", "--dim", "--train", "--eval", "--format", "--plot", "--charts",
         "--fuse", "--labels", "--order-by", "--fp16", "--gpus-per-worker", "--pair-cols"}


def test_every_documented_default_is_the_codes():
    checked = 0
    for command, action, doc in documented_flags():
        flag = action.option_strings[-1]
        where = f"{command} {flag}: documented default {doc!r}"
        rule = IN_WORDS.get(f"{command} {flag}") or IN_WORDS.get(flag)
        if rule is not None:
            assert rule(doc), where
        elif action.default is not None and action.default is not False and flag not in PROSE:
            value = action.default
            if isinstance(value, int | float) and not isinstance(value, bool):
                assert same_number(doc, value), f"{where}, parser {value!r}"
            else:
                assert doc.startswith(shown(value)), f"{where}, parser {value!r}"
        elif action.dest in DECLARED and DECLARED[action.dest].cli:
            for params in (TEXT_HEAD, SEQUENCE_HEAD):
                if action.dest in params and params[action.dest].default is not None:
                    assert shown(params[action.dest].default) in doc, \
                        f"{where}, estimator {params[action.dest].default!r}"
        else:
            assert flag in PROSE, f"{where}: say how it is decided (IN_WORDS) or list it"
        checked += 1
    assert checked > 60


def test_flag_defaults_named_in_the_docs_are_the_declared_ones():
    pattern = re.compile(r"`(--[a-z-]+)`, default:? ([\d.]+)")
    found = 0
    for doc in (ROOT / "README.md", ROOT / "docs" / "HEADS.md"):
        for flag, value in pattern.findall(doc.read_text()):
            name = flag[2:].replace("-", "_")
            declared = [ps[name].default for ps in (TEXT_HEAD, HEAD_SELECTOR) if name in ps]
            assert declared and same_number(value, declared[0]), (doc.name, flag, value)
            found += 1
    assert found >= 3


def test_shortcut_programs_call_themselves_by_their_names(capsys):
    with pytest.raises(SystemExit):
        build_parser("featurize").parse_args(["featurize", "--help"])
    assert capsys.readouterr().out.startswith("usage: featurize ")
    assert main(["fit-head", "--lr", "-1"], shortcut="fit-head") == 2
    assert "(see fit-head --help)" in capsys.readouterr().err
    assert main(["fit-head", "--lr", "-1"]) == 2
    assert "(see featstore fit-head --help)" in capsys.readouterr().err


def test_model_help_says_what_model_means_in_each_command():
    parser = build_parser()
    subs = parser._subparsers._group_actions[0].choices  # noqa: SLF001
    helps = {c: next(a.help for a in subs[c]._actions if "--model" in a.option_strings)
             for c in ("featurize", "fit-head", "compare", "probe-layers")}
    assert "to encode with" in helps["featurize"]
    for command in ("fit-head", "compare", "probe-layers"):
        assert helps[command].startswith("the store's encoder to read"), command


def test_refusals_advise_what_applies(tmp_path, capsys):
    toy_store(tmp_path / "s", n=60)
    s = ["--store", str(tmp_path / "s"), "--no-progress"]
    assert main(["fit-head", *s, "--layers", "9", "--C", "1"]) == 2
    err = capsys.readouterr().err
    assert "stores layers 0 to 3" in err and "--layers all" not in err
    assert main(["fit-head", *s, "--label-col", "labell", "--C", "1"]) == 2
    err = capsys.readouterr().err
    assert "has no column 'labell' for --label-col; its columns are: text, label, split" in err


def test_heads_doc_says_predict_encodes_new_texts():
    text = (ROOT / "docs" / "HEADS.md").read_text()
    assert "must be featurized already" not in text
    assert "texts the store lacks are encoded" in text
