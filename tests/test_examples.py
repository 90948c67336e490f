"""The README's examples and the quickstart notebook run as written, on the bundled encoder:
every `$ command` of the README's console blocks (exit status 0, or 2 where the README shows an
error), then its Python blocks; the notebook executes top to bottom and is stored without
outputs."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from featstore.cli import main

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"```(console|python)\n(.*?)```", re.S)


def readme_blocks() -> list[tuple[str, str]]:
    return BLOCK.findall((ROOT / "README.md").read_text())


def console_commands(block: str) -> list[tuple[list[str], int]]:
    """(argv for featstore's main, expected exit status) for each `$ ` line of a block."""
    lines = block.splitlines()
    out = []
    for i, line in enumerate(lines):
        if not line.startswith("$ "):
            continue
        argv = shlex.split(line[2:])
        shown = lines[i + 1] if i + 1 < len(lines) else ""
        program, rest = argv[0], argv[1:]
        assert program in ("featstore", "featurize", "fit-head"), line
        out.append(((rest if program == "featstore" else [program, *rest]),
                    2 if shown.startswith("error:") else 0))
    return out


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A directory like the project root: data/sample.csv, nothing else."""
    work = tmp_path_factory.mktemp("readme")
    shutil.copytree(ROOT / "data", work / "data")
    return work


def test_readme_commands_and_python_run_as_written(workdir, monkeypatch, capsys):
    monkeypatch.chdir(workdir)
    blocks = readme_blocks()
    ran = {"console": 0, "python": 0}
    namespace: dict = {}  # one Python session, as a reader following along would have
    for kind, body in blocks:  # in the README's order: later blocks use what earlier ones made
        if kind == "python":
            exec(compile(body, "README.md", "exec"), namespace)  # noqa: S102
            ran["python"] += 1
            continue
        for argv, expected in console_commands(body):
            code = main(argv)
            out, err = capsys.readouterr()
            assert code == expected, (argv, out[-2000:], err[-2000:])
            if expected == 2:
                assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
            ran["console"] += 1
    assert ran["console"] >= 8 and ran["python"] >= 3


def test_quickstart_notebook_runs_and_is_stored_clean(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    path = ROOT / "examples" / "quickstart.ipynb"
    raw = json.loads(path.read_text())
    assert all(not c.get("outputs") and c.get("execution_count") is None
               for c in raw["cells"] if c["cell_type"] == "code"), "outputs must be stripped"
    shutil.copytree(ROOT / "data", tmp_path / "data")
    (tmp_path / "examples").mkdir()
    nb = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path / "examples")}}
                            ).execute()
    text = "\n".join(o.get("text", "") or json.dumps(o.get("data", {}))
                     for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "336 new texts encoded" in text
    accuracies = [float(x) for x in re.findall(r"(\d+\.\d)% on", text)]
    assert accuracies and accuracies[0] > 80
    assert "card_lost" in text and "refund_request" in text
    assert (tmp_path / "examples" / "quickstart-layers.png").read_bytes()[:4] == b"\x89PNG"
    warnings = [o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
                if o.get("name") == "stderr"]
    assert not any("Warning" in w for w in warnings), warnings  # e.g. tqdm's IProgress warning
    # what it wrote beside itself is git-ignored in the project
    made = sorted(p.relative_to(tmp_path).as_posix()
                  for p in (tmp_path / "examples").iterdir() if p.name != "quickstart.ipynb")
    assert made == ["examples/quickstart-layers.png", "examples/quickstart-store"]
    if shutil.which("git") and (ROOT / ".git").exists():
        paths = [m + "/" if (tmp_path / m).is_dir() else m for m in made]
        ignored = subprocess.run(["git", "check-ignore", *paths], cwd=ROOT, capture_output=True,
                                 text=True)
        assert ignored.stdout.split() == paths, ignored.stdout
