"""API keys: the file keeps only SHA-256 hashes, one ``sha256:<hex>`` per line.

Keys are 256-bit random tokens, so a plain (unsalted) SHA-256 is enough to make the file
useless to whoever reads it; comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from gnnbackdoor.errors import UserError

PREFIX = "sha256:"


def hash_key(key: str) -> str:
    return PREFIX + hashlib.sha256(key.encode()).hexdigest()


def add_key(path: Path) -> str:
    """Create a key, append its hash to ``path`` (created with mode 0600), return the key."""
    key = "gbk_" + secrets.token_urlsafe(32)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a") as handle:
        handle.write(hash_key(key) + "\n")
    return key


class KeyStore:
    """The accepted key hashes of a file."""

    def __init__(self, hashes: list[str]):
        self._hashes = [h.encode() for h in hashes]

    @classmethod
    def load(cls, path: Path) -> KeyStore:
        try:
            lines = Path(path).read_text().splitlines()
        except OSError as error:
            raise UserError(f"cannot read API keys file {path}: {error.strerror}") from None
        hashes = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
        bad = [h for h in hashes if not h.startswith(PREFIX)]
        if bad:
            raise UserError(f"{path}: lines must be '{PREFIX}<hex>' (add keys with 'keys add')")
        if not hashes:
            raise UserError(f"{path} holds no keys; add one with 'gnnbackdoor keys add {path}'")
        return cls(hashes)

    def verify(self, key: str) -> bool:
        candidate = hash_key(key).encode()
        found = False
        for known in self._hashes:
            found |= hmac.compare_digest(candidate, known)
        return found
