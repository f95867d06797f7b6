"""Short content hashes of weights files: the key that ties a cached evaluation or a recorded choice to the exact
weights it read."""
from __future__ import annotations

import hashlib
from pathlib import Path


def file_hash(path: str | Path) -> str:
    """The first 10 hex digits of the file's SHA-1."""
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()[:10]
