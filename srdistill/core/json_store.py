"""A JSON dict on disk that a killed job resumes from: every ``put`` rewrites it atomically."""
from __future__ import annotations

import json
from pathlib import Path

from .atomic_io import atomic_write_text


class JsonStore:
    """``store.get(key)`` / ``store.put(key, value)`` over ``path`` (created on the first ``put``)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.data = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def get(self, key: str, default=None):
        return self.data.get(key, default)

    def put(self, key: str, value) -> None:
        self.data[key] = value
        atomic_write_text(self.path, json.dumps(self.data, indent=1))
