"""The embedded secret store: AES-256-GCM envelope encryption in the ``secret_blobs`` table.

Layout
    Each tenant has one random 256-bit *data key*. A secret is sealed with it as
    ``base64(nonce || AES-GCM(data_key, value, aad=ref))``, so a blob copied onto
    another ref fails authentication. The data key is stored beside every blob
    wrapped by the *master key* (``aad = tenant id + key version``), so relabelling
    a blob's tenant or version fails too. The database alone never reveals a secret.

Master key ring (``TCC_MASTER_KEY_FILE``, mode 0600)
    One ``<version>:<base64 32 bytes>`` line per key; ``#`` lines are comments. The
    highest version wraps new data keys; lower versions are only kept to read blobs
    during a rotation. A file holding one bare base64 key is version 1, so
    ``head -c 32 /dev/urandom | base64 > master.key`` is a valid ring.

Rotation (``rotate_master_key``)
    1. the new key is appended to the ring file (every process re-reads the file
       when it changes, so all of them can read both versions);
    2. every blob's data key is re-wrapped under the new version, in batches;
    3. the ring file is rewritten with the new key only, then a last pass catches a
       blob another process wrapped under the old key meanwhile.
    Data keys and ciphertexts never change, so rotation is cheap and resumable: run
    it again with the same new key file after a crash. Afterwards the old master key
    is not needed for anything and can be destroyed.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.db import Database
from core.db.models import SecretBlob
from core.secrets import SecretIntegrityError, SecretStoreUnavailable
from core.secrets.base import SecretNotFound, secret_ref

KEY_BYTES = 32
NONCE_BYTES = 12
REWRAP_BATCH = 200


@dataclass(frozen=True)
class KeyRing:
    """Master keys by version; the highest version is the active one."""

    keys: dict[int, bytes]

    @property
    def active_version(self) -> int:
        return max(self.keys)

    def key(self, version: int) -> bytes | None:
        return self.keys.get(version)

    def __repr__(self) -> str:  # the key bytes must never reach a log or traceback
        return f"KeyRing(versions={sorted(self.keys)})"


def _decode_key(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SecretStoreUnavailable(
            f"{where}: not valid base64", code="master_key_invalid"
        ) from None
    if len(key) != KEY_BYTES:
        raise SecretStoreUnavailable(
            f"{where}: a master key must be {KEY_BYTES} bytes", code="master_key_invalid"
        )
    return key


def parse_key_ring(text: str, source: str) -> KeyRing:
    """Parse a key ring file (``<version>:<base64>`` lines, or one bare base64 key)."""
    keys: dict[int, bytes] = {}
    lines = [(n, ln.strip()) for n, ln in enumerate(text.splitlines(), 1)]
    lines = [(n, ln) for n, ln in lines if ln and not ln.startswith("#")]
    if len(lines) == 1 and ":" not in lines[0][1]:
        return KeyRing({1: _decode_key(lines[0][1], f"{source}: line {lines[0][0]}")})
    for number, line in lines:
        version_text, _, key_text = line.partition(":")
        if not version_text.isdigit() or int(version_text) < 1:
            raise SecretStoreUnavailable(
                f"{source}: line {number}: expected '<version>:<base64 key>'",
                code="master_key_invalid",
            )
        keys[int(version_text)] = _decode_key(key_text, f"{source}: line {number}")
    if not keys:
        raise SecretStoreUnavailable(f"{source}: holds no key", code="master_key_invalid")
    return KeyRing(keys)


def write_key_ring(path: Path, ring: KeyRing) -> None:
    """Atomically (re)write ``path`` with ``ring``, readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    lines = ["# TinyClaw master key ring: <version>:<base64 key>; the highest version is active"]
    lines += [f"{v}:{base64.b64encode(k).decode()}" for v, k in sorted(ring.keys.items())]
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write("\n".join(lines) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load_or_create_master_key(path: Path, create: bool) -> KeyRing:
    """Load the key ring at ``path``; when absent, create one (``create``) or raise."""
    if not path.exists():
        if not create:
            raise SecretStoreUnavailable(
                f"master key file {path} does not exist; mount it or set TCC_MASTER_KEY_FILE",
                code="master_key_missing",
            )
        write_key_ring(path, KeyRing({1: AESGCM.generate_key(bit_length=256)}))
    return parse_key_ring(path.read_text(encoding="ascii"), str(path))


def _seal(key: bytes, plaintext: bytes, aad: bytes) -> str:
    nonce = os.urandom(NONCE_BYTES)
    return base64.b64encode(nonce + AESGCM(key).encrypt(nonce, plaintext, aad)).decode()


def _open(key: bytes, sealed: str, aad: bytes) -> bytes:
    raw = base64.b64decode(sealed)
    return AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], aad)


def _wrap_aad(tenant_id: str | None, version: int) -> bytes:
    return f"tcc/data-key/{tenant_id}/v{version}".encode()


class LocalSecretStore:
    """Secrets sealed in the database under per-tenant data keys (see module docstring)."""

    def __init__(self, db: Database, master_key_file: Path) -> None:
        self._db = db
        self._key_file = Path(master_key_file)
        self._ring = load_or_create_master_key(self._key_file, create=False)
        self._ring_stamp = self._stamp()

    def __repr__(self) -> str:
        return f"LocalSecretStore(master_key_file={str(self._key_file)!r})"

    def _stamp(self) -> tuple[int, int, int]:
        st = self._key_file.stat()
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _current_ring(self) -> KeyRing:
        # Another process may be rotating: pick up its ring file as soon as it changes.
        try:
            stamp = self._stamp()
        except FileNotFoundError:
            raise SecretStoreUnavailable(
                f"master key file {self._key_file} disappeared", code="master_key_missing"
            ) from None
        if stamp != self._ring_stamp:
            self._ring = load_or_create_master_key(self._key_file, create=False)
            self._ring_stamp = stamp
        return self._ring

    def _unwrap(self, ring: KeyRing, blob: SecretBlob) -> bytes:
        master = ring.key(blob.key_version)
        if master is None:
            raise SecretIntegrityError(
                f"secret {blob.ref} is wrapped by master key version {blob.key_version}, "
                f"which is not in the key ring (versions {sorted(ring.keys)})"
            )
        try:
            return _open(master, blob.wrapped_key, _wrap_aad(blob.tenant_id, blob.key_version))
        except (InvalidTag, ValueError, binascii.Error):
            raise SecretIntegrityError(
                f"the data key of secret {blob.ref} failed authentication"
            ) from None

    def _wrap(self, ring: KeyRing, tenant_id: str | None, data_key: bytes) -> tuple[int, str]:
        version = ring.active_version
        master = ring.keys[version]
        return version, _seal(master, data_key, _wrap_aad(tenant_id, version))

    def _tenant_data_key(self, session: Session, ring: KeyRing, tenant_id: str) -> bytes:
        existing = session.scalars(
            select(SecretBlob).where(SecretBlob.tenant_id == tenant_id).limit(1)
        ).first()
        if existing is None:
            return AESGCM.generate_key(bit_length=256)
        return self._unwrap(ring, existing)

    def put(self, tenant_id: str, name: str, value: str) -> str:
        """Store (or overwrite) a secret and return its reference."""
        ref = secret_ref(tenant_id, name)
        for attempt in range(2):
            try:
                self._put_once(tenant_id, ref, value)
                return ref
            except IntegrityError:
                # A concurrent put inserted the same ref first; the retry updates it.
                if attempt:
                    raise
        return ref

    def _put_once(self, tenant_id: str, ref: str, value: str) -> None:
        ring = self._current_ring()
        with self._db.system_session() as session:
            data_key = self._tenant_data_key(session, ring, tenant_id)
            version, wrapped = self._wrap(ring, tenant_id, data_key)
            sealed = _seal(data_key, value.encode("utf-8"), ref.encode())
            blob = session.get(SecretBlob, ref)
            if blob is None:
                blob = SecretBlob(ref=ref, tenant_id=tenant_id)
                session.add(blob)
            blob.key_version, blob.wrapped_key, blob.ciphertext = version, wrapped, sealed

    def get(self, ref: str) -> str:
        """The plaintext of ``ref``; ``SecretNotFound`` when absent."""
        ring = self._current_ring()
        with self._db.system_session() as session:
            blob = session.get(SecretBlob, ref)
            if blob is None:
                raise SecretNotFound(f"secret {ref} not found", ref=ref)
            data_key = self._unwrap(ring, blob)
            try:
                return _open(data_key, blob.ciphertext, ref.encode()).decode("utf-8")
            except (InvalidTag, ValueError, binascii.Error):
                raise SecretIntegrityError(f"secret {ref} failed authentication") from None

    def delete(self, ref: str) -> None:
        """Remove ``ref``; removing a missing secret is not an error."""
        with self._db.system_session() as session:
            session.execute(delete(SecretBlob).where(SecretBlob.ref == ref))

    def delete_tenant(self, tenant_id: str) -> None:
        """Remove every secret of a tenant (idempotent); its data key goes with them."""
        with self._db.system_session() as session:
            session.execute(delete(SecretBlob).where(SecretBlob.tenant_id == tenant_id))

    def rotate_master_key(self, new_key_file: Path | None = None) -> int:
        """Re-wrap every data key under a new master key; return the new key version.

        ``new_key_file`` holds the new key (one base64 line, e.g. from a KMS); without
        it a random key is generated. The ring file is rewritten in place.
        """
        ring = self._current_ring()
        if new_key_file is not None:
            new_key = parse_key_ring(new_key_file.read_text(encoding="ascii"), str(new_key_file))
            key = new_key.keys[new_key.active_version]
        else:
            key = AESGCM.generate_key(bit_length=256)
        # Resuming an interrupted rotation: the new key is already in the ring.
        version = next((v for v, k in ring.keys.items() if k == key), ring.active_version + 1)
        full = KeyRing({**ring.keys, version: key})
        write_key_ring(self._key_file, full)
        self._rewrap_all(full, version)
        write_key_ring(self._key_file, KeyRing({version: key}))
        self._rewrap_all(full, version)  # stragglers wrapped by another process meanwhile
        self._ring, self._ring_stamp = KeyRing({version: key}), self._stamp()
        return version

    def _rewrap_all(self, ring: KeyRing, version: int) -> int:
        """Re-wrap, in batches, every blob not yet under ``version``; return how many."""
        total = 0
        while True:
            with self._db.system_session() as session:
                blobs = session.scalars(
                    select(SecretBlob).where(SecretBlob.key_version != version).limit(REWRAP_BATCH)
                ).all()
                for blob in blobs:
                    data_key = self._unwrap(ring, blob)
                    blob.wrapped_key = _seal(
                        ring.keys[version], data_key, _wrap_aad(blob.tenant_id, version)
                    )
                    blob.key_version = version
            total += len(blobs)
            if len(blobs) < REWRAP_BATCH:
                return total
