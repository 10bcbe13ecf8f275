"""AES-GCM payload codec: every workflow payload is encrypted before it leaves the process.

Secrets never enter payloads in the first place (activities store them and pass
references); the codec additionally keeps tenant data in histories unreadable to
anyone without the key. The Web UI reads payloads through the codec server
(``api/codec.py``), which only authorised admins can call.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ENCODING = b"binary/encrypted"
NONCE_BYTES = 12


def key_id(key: bytes) -> str:
    """A short, non-secret identifier of a key (so payloads say which key encrypted them)."""
    return hashlib.sha256(b"tcc-codec-key-id:" + key).hexdigest()[:16]


class EncryptionCodec(PayloadCodec):
    """Encrypts payloads with AES-256-GCM; decrypts with any key of its key ring."""

    def __init__(self, key: bytes, old_keys: Sequence[bytes] = ()) -> None:
        if len(key) != 32:
            raise ValueError("the payload codec key must be 32 bytes (AES-256)")
        self._key_id = key_id(key)
        self._aead = AESGCM(key)
        self._ring = {key_id(k): AESGCM(k) for k in (key, *old_keys)}

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Encrypt each payload (its serialized form) into a ``binary/encrypted`` payload."""
        return [self._encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Decrypt encrypted payloads; leave others as they are."""
        return [self._decrypt(p) for p in payloads]

    def _encrypt(self, payload: Payload) -> Payload:
        nonce = os.urandom(NONCE_BYTES)
        data = nonce + self._aead.encrypt(nonce, payload.SerializeToString(), None)
        return Payload(
            metadata={"encoding": ENCODING, "encryption-key-id": self._key_id.encode()},
            data=data,
        )

    def _decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding", b"") != ENCODING:
            return payload
        kid = payload.metadata.get("encryption-key-id", b"").decode()
        aead = self._ring.get(kid)
        if aead is None:
            raise ValueError(f"payload encrypted with unknown key id {kid!r}")
        plain = aead.decrypt(payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:], None)
        return Payload.FromString(plain)


def load_or_create_key(path: Path, *, create: bool) -> bytes:
    """Read a base64 key file; in development create it (mode 0600) when missing."""
    if path.exists():
        return base64.b64decode(path.read_text().strip())
    if not create:
        raise FileNotFoundError(f"codec key file {path} is missing")
    key = AESGCM.generate_key(bit_length=256)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(base64.b64encode(key).decode())
    return key
