"""Security of what users load: no unpickling, validated names, no paths out of the store,
no remote code unless asked."""

from __future__ import annotations

import ast
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from test_guarantees_support import (
    TEXTS,
    featurize_args,
    one_line_error,
    run_cli,
    tree_digest,
    write_corpus,
)

import featstore
from featstore.cli import main
from featstore.store import StoreError, StoreWriter, check_name
from featstore.store.manifest import check_relpath, manifest_checksum

PACKAGE = Path(featstore.__file__).parent


@pytest.fixture(scope="module")
def base(tiny_model_dir, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("security")
    model = tiny_model_dir("bert")
    corpus = write_corpus(root / "c.csv", TEXTS[:40])
    store = root / "store"
    assert main(featurize_args(corpus, store, model, "--shard-rows", "20")) == 0
    return {"store": store, "corpus": corpus, "model": model}


def _calls(tree: ast.AST) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)]


def _name(func: ast.expr) -> str:
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    return ".".join(reversed(parts))


def test_nothing_in_the_package_unpickles():
    """Static check of every module: no pickle load, no joblib or dill; torch.load only
    weights-only; numpy loads never allow pickles; pandas never reads pickles."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                mods = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                if any(m.split(".")[0] in {"dill", "joblib", "cloudpickle", "shelve"}
                       for m in mods):
                    offenders.append(f"{path.name}:{node.lineno} imports a pickle library")
        for call in _calls(tree):
            name = _name(call.func)
            kw = {k.arg: k.value for k in call.keywords}
            if name.endswith("torch.load") or name == "load" and "weights_only" in kw:
                wo = kw.get("weights_only")
                if not (isinstance(wo, ast.Constant) and wo.value is True):
                    offenders.append(f"{path.name}:{call.lineno} torch.load without "
                                     "weights_only=True")
            if name.endswith(("np.load", "numpy.load")):
                ap = kw.get("allow_pickle")
                if ap is not None and not (isinstance(ap, ast.Constant) and ap.value is False):
                    offenders.append(f"{path.name}:{call.lineno} np.load may unpickle")
            if name.endswith(("read_pickle", "pickle.loads", "pickle.load", "Unpickler")):
                offenders.append(f"{path.name}:{call.lineno} {name}")
    assert offenders == []


class _Marker:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_a_pickled_checkpoint_is_never_executed(capsys, tiny_model_dir, tmp_path):
    """A model directory whose weights are a pickle with a payload: refused, payload not run."""
    evil = tmp_path / "evil-model"
    shutil.copytree(tiny_model_dir("bert"), evil)
    from safetensors.torch import load_file

    state = load_file(str(evil / "model.safetensors"))
    (evil / "model.safetensors").unlink()
    marker = tmp_path / "payload-ran"
    torch.save({**state, "payload": _Marker(marker)}, evil / "pytorch_model.bin")
    corpus = write_corpus(tmp_path / "c.csv", ["a text"])
    code, _, err = run_cli(capsys, *featurize_args(corpus, tmp_path / "store", evil))
    assert not marker.exists()
    assert code == 2
    line = one_line_error(err)
    assert "evil-model" in line and "never unpickles" in line
    assert not (tmp_path / "store").exists()


def test_heads_are_safetensors_and_json(base, tmp_path):
    """What fit-head writes is read back without pickle: safetensors + JSON only."""
    from featstore.heads import artifacts

    src = Path(artifacts.__file__).read_text(encoding="utf-8")
    assert "safetensors" in src and "torch.load" not in src and "pickle.load" not in src


@pytest.mark.parametrize("name", ["../evil", "/abs/path", "a/b", "..", ".", "", ".hidden",
                                  "x" * 200, "name\0zero", "back\\slash", "new\nline"])
def test_names_that_would_leave_their_directory_are_refused(name):
    for what in ("dataset", "encoder", "head"):
        with pytest.raises(StoreError, match=f"invalid {what} name"):
            check_name(name, what)


@pytest.mark.parametrize("name", ["../evil", "/tmp/abs", "sub/dir", ".."])
def test_cli_dataset_name_traversal(capsys, base, tmp_path, name):
    store = tmp_path / "store"
    shutil.copytree(base["store"], store)
    digest = tree_digest(store)
    code, _, err = run_cli(capsys, *featurize_args(base["corpus"], store, base["model"],
                                                   "--name", name))
    assert code == 2 and "invalid dataset name" in one_line_error(err)
    assert tree_digest(store) == digest
    assert not (tmp_path / "evil").exists() and not Path("/tmp/abs").exists()


def test_head_names_are_checked_before_any_path_is_built(base):
    from featstore.heads.artifacts import head_dir
    from featstore.heads.loading import load_head

    for name in ("../../outside", "/etc", "a/b"):
        with pytest.raises(StoreError, match="invalid head name"):
            head_dir(base["store"], name)
        with pytest.raises(StoreError, match="invalid head name"):
            load_head(base["store"], name)


def test_encoder_ids_from_model_names_stay_one_path_component(tiny_model_dir, tmp_path):
    """A model given as ../../path still yields an encoder id that is a valid name."""
    from featstore.featurize.encoder import Encoder

    model = tiny_model_dir("bert")
    rel = os.path.relpath(model, Path.cwd())
    enc = Encoder(rel, device="cpu")
    assert check_name(enc.encoder_id, "encoder") == enc.encoder_id
    assert "/" not in enc.encoder_id and not enc.encoder_id.startswith(".")


def _crafted(store: Path, tmp_path: Path, edit) -> Path:
    bad = tmp_path / "crafted"
    shutil.copytree(store, bad)
    m = json.loads((bad / "manifest.json").read_text())
    edit(m)
    m["checksum"] = manifest_checksum(m)  # a crafted manifest can carry a valid checksum
    (bad / "manifest.json").write_text(json.dumps(m))
    return bad


def _first_shard(m: dict) -> dict:
    return next(iter(m["encoders"].values()))["shards"][0]


@pytest.mark.parametrize("target", ["../../outside.h5", "/etc/passwd",
                                    "encoders/../../outside.h5", "encoders/x/../../../y.h5"])
def test_crafted_manifest_shard_path_is_refused(capsys, base, tmp_path, target):
    outside = tmp_path / "outside.h5"
    outside.write_bytes(b"not yours")
    bad = _crafted(base["store"], tmp_path, lambda m: _first_shard(m).update(file=target))
    s = featstore.open(bad)
    with pytest.raises(StoreError, match="outside the store"):
        s.features("c", "cls", None)
    code, _, err = run_cli(capsys, "verify", "--store", bad)
    assert code == 1 and "outside the store" in err
    # A writer refuses to start rather than sweep or touch anything the manifest names.
    with pytest.raises(StoreError, match="outside the store"), StoreWriter(bad):
        pass
    code, _, err = run_cli(capsys, "repair", "--store", bad)
    assert code == 2 and "outside the store" in one_line_error(err)
    assert outside.read_bytes() == b"not yours"


def test_crafted_dataset_path_is_refused(base, tmp_path):
    bad = _crafted(base["store"], tmp_path,
                   lambda m: m["datasets"]["c"].update(file="../../../etc/passwd"))
    with pytest.raises(StoreError, match="outside the store"):
        featstore.open(bad).dataset("c")


def test_symlink_out_of_the_store_is_refused(base, tmp_path):
    """A shard replaced by a symlink to a file outside: resolved, and refused."""
    bad = tmp_path / "linked"
    shutil.copytree(base["store"], bad)
    m = json.loads((bad / "manifest.json").read_text())
    shard = bad / _first_shard(m)["file"]
    outside = tmp_path / "secret.h5"
    shutil.copyfile(shard, outside)
    shard.unlink()
    shard.symlink_to(outside)
    with pytest.raises(StoreError, match="outside the store"):
        featstore.open(bad).features("c", "mean", None)
    assert outside.exists()


def test_orphan_sweep_never_follows_links_out_of_the_store(base, tmp_path):
    """A directory link planted under encoders/: the writer's sweep leaves its target alone."""
    store = tmp_path / "store"
    shutil.copytree(base["store"], store)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    (store / "encoders" / "planted").symlink_to(victim, target_is_directory=True)
    with StoreWriter(store):
        pass
    assert (victim / "precious.txt").read_text() == "keep me"


def test_crafted_manifest_names_are_checked(base, tmp_path):
    def rename(m):
        m["encoders"]["../../x"] = m["encoders"].pop(next(iter(m["encoders"])))

    bad = _crafted(base["store"], tmp_path, rename)
    with pytest.raises(StoreError, match="invalid encoder name"):
        featstore.open(bad)


def test_check_relpath_accepts_only_paths_inside(tmp_path):
    assert check_relpath("encoders/a/b.h5", tmp_path) == (tmp_path / "encoders/a/b.h5").resolve()
    for rel in ("", "/x", "../x", "a/../../x"):
        with pytest.raises(StoreError):
            check_relpath(rel, tmp_path)


def test_remote_code_is_off_unless_asked(monkeypatch, tiny_model_dir, tmp_path, capsys):
    import transformers

    seen: list[tuple[str, object]] = []

    def recorder(cls_name, real):
        def load(*args, **kwargs):
            seen.append((cls_name, kwargs.get("trust_remote_code", "absent")))
            return real(*args, **kwargs)
        return load

    for cls_name in ("AutoConfig", "AutoTokenizer", "AutoModel"):
        cls = getattr(transformers, cls_name)
        monkeypatch.setattr(cls, "from_pretrained", recorder(cls_name, cls.from_pretrained))
    model = tiny_model_dir("bert")
    corpus = write_corpus(tmp_path / "c.csv", ["one text"])
    assert run_cli(capsys, *featurize_args(corpus, tmp_path / "a", model))[0] == 0
    assert {n for n, _ in seen} == {"AutoConfig", "AutoTokenizer", "AutoModel"}
    assert all(v is False for _, v in seen), seen
    seen.clear()
    assert run_cli(capsys, *featurize_args(corpus, tmp_path / "b", model,
                                           "--trust-remote-code"))[0] == 0
    assert seen and all(v is True for _, v in seen), seen


@pytest.mark.parametrize("name", ["../evil", "/tmp/evil-head", "a/b"])
def test_fit_head_output_name_traversal(capsys, base, tmp_path, name):
    store = tmp_path / "store"
    shutil.copytree(base["store"], store)
    code, _, err = run_cli(capsys, "fit-head", "--store", store, "--train", "c", "--cv", "2",
                           "--no-progress", "--out", name)
    assert code == 2 and "invalid head name" in one_line_error(err)
    assert not (tmp_path / "evil").exists() and not Path("/tmp/evil-head").exists()
