"""Generated responses kept by their content (:func:`~grace_engine.models.generation.response_key`),
so a re-score never regenerates them: the :class:`ResponseStore` protocol and a directory of JSON
files (the workers keep theirs in the database)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from grace_engine.models.generation import Generated, generated_from_json, generated_to_json


class ResponseStore(Protocol):
    """Where generated responses are kept so a re-score never regenerates them."""

    def get(self, key: str) -> Generated | None: ...

    def put(self, key: str, generated: Generated) -> None: ...


class DirectoryResponseStore:
    """One JSON file per response key under ``root``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def get(self, key: str) -> Generated | None:
        try:
            text = (self.root / f"{key}.json").read_text("utf-8")
        except OSError:
            return None  # missing or unreadable (e.g. a crash mid-write elsewhere): regenerate
        return generated_from_json(text)

    def put(self, key: str, generated: Generated) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f"{key}.json.tmp"
        tmp.write_text(generated_to_json(generated), "utf-8")
        tmp.replace(self.root / f"{key}.json")
