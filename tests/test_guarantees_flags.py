"""Every command's every valued flag, given invalid values: exit 2, one line, store unchanged;
and a hypothesis fuzz over whole argument lists: never a traceback, and a refused command line
never changes the store."""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_guarantees_support import run_cli, tree_digest, write_corpus
from test_heads_support import toy_store

from featstore.cli import build_parser

FUZZ = settings(max_examples=int(os.environ.get("FEATSTORE_FUZZ_EXAMPLES", "30")),
                deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                      HealthCheck.too_slow])
# invalid values for each kind of declared flag type, by the validator's name
BAD = {
    "integer >= 0": ["-1", "x", "1.5"], "integer >= 1": ["0", "-3", "x", "2.5"],
    "integer >= 2": ["1", "0", "x"], "positive_float": ["0", "-1", "nan", "inf", "x"],
    "non_negative_float": ["-0.5", "nan", "x"], "fraction": ["1", "1.5", "-0.01", "nan"],
    "any_int": ["x", "1.5"], "dataset name": ["a/b", "abc\n", "..", "-x"],
    "head name": ["../h", "abc\n", "/etc", ".hidden"], "text_value": ["", "a\nb"],
    "source name": ["a/b", "..", "-x", "\u00e9"],
    "device": ["tpu", "cuda:x"], "feature_list": ["cls,bogus", ","],
    "layer_numbers": ["x", "1,y"], "str": ["x,y"], "cosine": ["1.5", "-0.1", "nan", "x"],
}


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    """Every command by the words that name it (`heads list` too)."""
    def walk(parser: argparse.ArgumentParser, words: str) -> dict[str, argparse.ArgumentParser]:
        action = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)),
                      None)
        if action is None:
            return {words: parser}
        return {k: v for name, sub in action.choices.items()
                for k, v in walk(sub, f"{words} {name}".strip()).items()}
    return walk(build_parser(), "")


def _required(command: str, store: Path, corpus: Path) -> list[str]:
    """The least a command needs besides the flag under test."""
    return {"featurize": [str(corpus)], "predict": ["toy", "--head", "h"],
            "import-vectors": [str(corpus), "--name", "v"], "heads rm": ["h"],
            "neighbors": ["--dataset", "toy", "--text", "text number 1"]}.get(command, [])


def _invalid_cases() -> list[tuple[str, str, str]]:
    cases = []
    for command, sub in _subparsers().items():
        for a in sub._actions:
            if not a.option_strings or a.type is None or a.dest in ("help",):
                continue
            kind = getattr(a.type, "__name__", "")
            for bad in BAD.get(kind, ["bogus-choice"] if kind not in BAD else []):
                cases.append((command, a.option_strings[0], bad))
    return cases


CASES = _invalid_cases()


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("flags")
    store, _, texts = toy_store(root / "store", n=60)
    corpus = write_corpus(root / "c.csv", texts[:5])
    return {"root": root, "store": root / "store", "corpus": corpus}


def test_every_valued_flag_is_declared_with_a_checking_type():
    """No flag takes a value unchecked: each has a validator from the one spec."""
    known = set(BAD) | {"one_of"}
    for command, sub in _subparsers().items():
        for a in sub._actions:
            if a.option_strings and a.nargs != 0 and a.dest != "help":
                name = getattr(a.type, "__name__", None)
                assert name in known or getattr(a.type, "choices", None), \
                    f"{command} {a.option_strings[0]} has no declared check ({name})"


def test_invalid_values_of_every_flag_are_refused_before_any_work(capsys, toy, tmp_path):
    store = tmp_path / "store"
    shutil.copytree(toy["store"], store)
    digest = tree_digest(store)
    failures = []
    for command, flag, bad in CASES:
        argv = [*command.split(), *_required(command, store, toy["corpus"]), "--store",
                str(store)]
        if flag != "--store":
            argv += [flag, bad]
        else:
            argv[argv.index("--store") + 1] = bad
        code, out, err = run_cli(capsys, *argv)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        if code != 2 or len(lines) != 1 or not lines[0].startswith("error: ") or out:
            failures.append(f"{command} {flag} {bad!r}: exit {code}, {err.strip()[:120]}")
        if tree_digest(store) != digest:
            failures.append(f"{command} {flag} {bad!r}: changed the store")
            shutil.rmtree(store)
            shutil.copytree(toy["store"], store)
    with capsys.disabled():
        print(f"\nflag check: {len(CASES)} invalid values over {len(_subparsers())} commands, "
              f"{len(CASES) - len(failures)} refused in one line with the store unchanged")
    assert not failures, "\n".join(failures)


def _argv_strategy(toy: dict, store: Path):
    subs = _subparsers()

    @st.composite
    def argv(draw):
        command = draw(st.sampled_from(sorted(subs)))
        sub = subs[command]
        flags = [a for a in sub._actions if a.option_strings and a.dest not in ("help",)]
        out = command.split()
        if command == "featurize":
            out.append(draw(st.sampled_from([str(toy["corpus"]), "missing.csv"])))
        if command == "predict":
            out += ["toy", "--head", draw(st.sampled_from(["h", "nope"]))]
        if command == "heads rm":
            out.append(draw(st.sampled_from(["h", "nope", "../x"])))
        if command == "neighbors":
            out += ["--text", "text number 1"]
        out += ["--store", str(store)]
        for a in draw(st.lists(st.sampled_from(flags), max_size=4)):
            if a.dest in ("store", "model", "train", "eval"):
                continue  # keep the run on the toy store, offline
            out.append(a.option_strings[-1])
            if a.nargs == 0:
                continue
            kind = getattr(a.type, "__name__", "")
            good = list(a.choices or []) or ["1", "2", "0.5", "mean", "c0"]
            values = [*BAD.get(kind, []), *good, "-", "--", "\u00e9", "1e309"]
            out.append(draw(st.sampled_from(values)))
        if "--auto" in out or "--save-best" in out:
            out += ["--budget", "1"]  # a search's length is test_search's business
        return out
    return argv()


def test_fuzzed_argument_lists_never_trace_back(capsys, toy, tmp_path, monkeypatch):
    store = tmp_path / "store"
    shutil.copytree(toy["store"], store)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a fuzzed run never reaches for the network
    monkeypatch.chdir(tmp_path)  # charts a fuzzed compare or probe-layers writes land here

    @FUZZ
    @given(argv=_argv_strategy(toy, store))
    def check(argv):
        before = tree_digest(store)
        code, _, err = run_cli(capsys, *argv)
        assert "Traceback" not in err and "unexpected " not in err, (argv, err)
        assert code in (0, 1, 2), (argv, code)
        if code == 2:
            lines = [ln for ln in err.splitlines() if ln.strip()]
            assert len(lines) == 1 and lines[0].startswith("error: "), (argv, err)
            if "already holds" not in err:
                assert tree_digest(store) == before, argv

    check()


def test_search_flags_are_enumerated_with_invalid_values():
    """--budget and --folds (fit-head --auto, compare --save-best) are in the invalid-value
    sweep like every other valued flag."""
    for case in [("fit-head", "--budget", "0"), ("fit-head", "--budget", "nan"),
                 ("fit-head", "--folds", "1"), ("compare", "--budget", "-1"),
                 ("compare", "--folds", "x")]:
        assert case in CASES, case
