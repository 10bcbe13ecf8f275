"""Encrypted tenant backups: a home snapshot sealed with the tenant's backup data key.

The key (32 random bytes) lives in the secret store under the tenant
(``BACKUP_KEY``); the file on disk is ``MAGIC || nonce || AES-256-GCM(tar)`` with the
tenant id as associated data, mode 0600. Without the secret store the file is noise.
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from core.errors import InvalidInput
from core.secrets import SecretStore
from core.secrets.base import SecretNotFound, secret_ref

BACKUP_KEY = "backup_data_key"
MAGIC = b"TCCBAK1\n"


def backup_key(store: SecretStore, tenant_id: str, create: bool = True) -> bytes | None:
    """The tenant's backup data key, created on first use when ``create``."""
    try:
        return base64.b64decode(store.get(secret_ref(tenant_id, BACKUP_KEY)))
    except SecretNotFound:
        if not create:
            return None
    key = secrets.token_bytes(32)
    store.put(tenant_id, BACKUP_KEY, base64.b64encode(key).decode())
    return key


def seal_file(src: Path, dest: Path, key: bytes, tenant_id: str) -> None:
    """Encrypt ``src`` into ``dest`` (written atomically, mode 0600)."""
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(key).encrypt(nonce, src.read_bytes(), tenant_id.encode())
    tmp = dest.with_name(f".{dest.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(MAGIC + nonce + sealed)
    os.replace(tmp, dest)


def open_file(src: Path, key: bytes, tenant_id: str) -> bytes:
    """Decrypt a sealed backup; InvalidInput when it is not one or was tampered with."""
    data = src.read_bytes()
    if not data.startswith(MAGIC):
        raise InvalidInput("Not an encrypted backup.", code="bad_backup")
    nonce, sealed = data[len(MAGIC) : len(MAGIC) + 12], data[len(MAGIC) + 12 :]
    try:
        return AESGCM(key).decrypt(nonce, sealed, tenant_id.encode())
    except Exception:
        raise InvalidInput("The backup does not open with this key.", code="bad_backup") from None
