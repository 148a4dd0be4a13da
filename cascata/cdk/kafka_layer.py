"""The Kafka client layer of the MSK variant: confluent-kafka and the MSK IAM SASL signer.

With `broker=msk` the functions that bind a stream produce to (or read offsets of) Kafka topics
through confluent-kafka, a native wheel that neither the Lambda runtime nor the Powertools layer
carries. `make kafka-layer` builds it without Docker: `pip download --only-binary=:all:` of the
hash-pinned `requirements-layer.lock` for the functions' own platform (`LAMBDA_PYTHON`, arm64,
CPython, manylinux), unzipped into `build/kafka-layer/python/`, the layer asset. A stamp beside
it records the runtime and the lock it was built for, so a synthesis never ships a layer built
for another Python or from another lock: it fails in one line naming the make target instead.

    python -m cascata.cdk.kafka_layer          # what `make kafka-layer` runs
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from cascata.cdk.config import ConfigError
from cascata.cdk.function import LAMBDA_ARCHITECTURE, LAMBDA_PYTHON
from cascata.project import find_project

LOCK_FILE = "requirements-layer.lock"
LAYER_DIR = Path("build") / "kafka-layer"
STAMP_FILE = Path("build") / "kafka-layer.json"
MAKE_TARGET = "make kafka-layer"

# pip's platform tags of the architectures Lambda offers. confluent-kafka's aarch64 wheels are
# manylinux_2_28 (glibc 2.28): the Python runtimes on Amazon Linux 2023 load them.
_PLATFORMS = {
    "arm64": ("manylinux_2_28_aarch64", "manylinux2014_aarch64"),
    "x86_64": ("manylinux_2_28_x86_64", "manylinux2014_x86_64"),
}


@dataclass(frozen=True, slots=True)
class LayerTarget:
    """What the layer is built for: the functions' Python and architecture, and the lock."""

    python: str
    architecture: str
    lock_sha256: str

    def as_json(self) -> dict[str, str]:
        return {"python": self.python, "architecture": self.architecture,
                "lock_sha256": self.lock_sha256}


def layer_target(root: Path) -> LayerTarget:
    lock = root / LOCK_FILE
    return LayerTarget(
        python="{}.{}".format(*LAMBDA_PYTHON),
        architecture=LAMBDA_ARCHITECTURE,
        lock_sha256=hashlib.sha256(lock.read_bytes()).hexdigest(),
    )


def download_command(*, target: LayerTarget, lock: Path, into: Path) -> list[str]:
    """The `pip download` of the locked wheels for the functions' platform, binaries only."""
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
               "--require-hashes", "--only-binary=:all:", "--implementation", "cp",
               "--python-version", target.python, "--dest", str(into), "-r", str(lock)]
    for platform in _PLATFORMS[target.architecture]:
        command += ["--platform", platform]
    return command


def build(root: Path) -> Path:
    """Build the layer of the project at `root` into `build/kafka-layer/` (replacing it)."""
    target = layer_target(root)
    layer, stamp = root / LAYER_DIR, root / STAMP_FILE
    with tempfile.TemporaryDirectory(prefix="cascata-kafka-layer-") as scratch:
        wheels, staged = Path(scratch) / "wheels", Path(scratch) / "layer" / "python"
        wheels.mkdir()
        # Our own interpreter's pip, with arguments built here from the lock's path.
        subprocess.run(  # noqa: S603
            download_command(target=target, lock=root / LOCK_FILE, into=wheels), check=True)
        found = sorted(wheels.glob("*.whl"))
        if not found:
            raise RuntimeError(f"pip downloaded no wheel from {LOCK_FILE}")
        staged.mkdir(parents=True)
        for wheel in found:
            with zipfile.ZipFile(wheel) as archive:
                archive.extractall(staged)
        stamp.unlink(missing_ok=True)
        shutil.rmtree(layer, ignore_errors=True)
        layer.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staged.parent), layer)
    stamp.write_text(json.dumps(target.as_json(), indent=2, sort_keys=True) + "\n")
    return layer


def built_layer(root: Path | None = None) -> Path:
    """The built layer directory for the functions' current platform and lock, or a
    `ConfigError` in one line saying which make target builds it."""
    root = root or find_project().root
    layer, stamp = root / LAYER_DIR, root / STAMP_FILE
    if not (layer / "python").is_dir() or not stamp.is_file():
        raise ConfigError(f"broker=msk needs the Kafka client layer, which is not built: run "
                          f"`{MAKE_TARGET}` (it downloads {LOCK_FILE} into {LAYER_DIR})")
    try:
        recorded = json.loads(stamp.read_text())
    except ValueError:
        recorded = None
    if recorded != layer_target(root).as_json():
        raise ConfigError(f"the Kafka client layer in {LAYER_DIR} was built for another Lambda "
                          f"runtime or lock: run `{MAKE_TARGET}` again")
    return layer


def main() -> None:
    root = find_project().root
    layer = build(root)
    print(f"Kafka client layer for python{layer_target(root).python} "
          f"({LAMBDA_ARCHITECTURE}) in {layer.relative_to(root)}")


if __name__ == "__main__":
    main()
