"""The production secret store: HashiCorp Vault / OpenBao KV v2 via hvac, Transit optional.

A secret ``ref`` lives at ``<mount>/tinyclaw/<ref>`` as ``{"value": ...}``. With a
Transit mount configured the value is first encrypted by Transit (``vault:v1:...``),
so the KV engine, its backups and anyone with only KV read never see plaintext.
Deleting removes the metadata and every version: a deleted secret cannot be undeleted.

hvac and transport errors become our error types; messages name the operation and
the reference, never the value (hvac exceptions are dropped, not chained, because
their text can echo a request).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager

import hvac
import requests
from hvac import exceptions as vault_errors

from core.secrets import SecretIntegrityError, SecretStoreUnavailable
from core.secrets.base import SecretNotFound, secret_ref

KV_PREFIX = "tinyclaw"


class VaultSecretStore:
    """Secrets in Vault KV v2 under ``<mount>/tinyclaw/``; optionally sealed by Transit."""

    def __init__(
        self,
        url: str,
        token: str,
        mount: str = "secret",
        transit_mount: str | None = None,
        transit_key: str = "tinyclaw",
        timeout: float = 10.0,
    ) -> None:
        self._client = hvac.Client(url=url, token=token, timeout=timeout)
        self._url = url
        self._mount = mount
        self._transit_mount = transit_mount
        self._transit_key = transit_key

    def __repr__(self) -> str:  # the token stays out of logs and tracebacks
        transit = (
            f", transit={self._transit_mount}/{self._transit_key}" if self._transit_mount else ""
        )
        return f"VaultSecretStore(url={self._url!r}, mount={self._mount!r}{transit})"

    @contextmanager
    def _vault(self, operation: str, ref: str) -> Iterator[None]:
        """Translate hvac/transport failures of ``operation`` on ``ref`` into our errors."""
        try:
            yield
        except vault_errors.InvalidPath:
            raise SecretNotFound(f"secret {ref} not found", ref=ref) from None
        except (vault_errors.Forbidden, vault_errors.Unauthorized) as exc:
            raise SecretStoreUnavailable(
                f"vault refused to {operation} {ref}: {type(exc).__name__}; check the token policy",
                code="secret_store_forbidden",
            ) from None
        except vault_errors.InvalidRequest as exc:
            raise SecretIntegrityError(
                f"vault rejected {operation} {ref}: {type(exc).__name__}"
            ) from None
        except (vault_errors.VaultError, requests.RequestException) as exc:
            raise SecretStoreUnavailable(
                f"vault could not {operation} {ref}: {type(exc).__name__}"
            ) from None

    def _path(self, ref: str) -> str:
        return f"{KV_PREFIX}/{ref}"

    def _encrypt(self, value: str) -> str:
        if not self._transit_mount:
            return value
        response = self._client.secrets.transit.encrypt_data(
            name=self._transit_key,
            plaintext=base64.b64encode(value.encode("utf-8")).decode(),
            mount_point=self._transit_mount,
        )
        return str(response["data"]["ciphertext"])

    def _decrypt(self, stored: str) -> str:
        if not self._transit_mount:
            return stored
        response = self._client.secrets.transit.decrypt_data(
            name=self._transit_key, ciphertext=stored, mount_point=self._transit_mount
        )
        return base64.b64decode(response["data"]["plaintext"]).decode("utf-8")

    def put(self, tenant_id: str, name: str, value: str) -> str:
        """Store (or overwrite) a secret and return its reference."""
        ref = secret_ref(tenant_id, name)
        with self._vault("write", ref):
            self._client.secrets.kv.v2.create_or_update_secret(
                path=self._path(ref),
                secret={"value": self._encrypt(value)},
                mount_point=self._mount,
            )
        return ref

    def get(self, ref: str) -> str:
        """The plaintext of ``ref``; ``SecretNotFound`` when absent."""
        with self._vault("read", ref):
            response = self._client.secrets.kv.v2.read_secret_version(
                path=self._path(ref), mount_point=self._mount, raise_on_deleted_version=True
            )
            stored = response["data"]["data"].get("value")
            if not isinstance(stored, str):
                raise SecretIntegrityError(f"secret {ref} has no value field")
            return self._decrypt(stored)

    def delete(self, ref: str) -> None:
        """Remove ``ref`` with every version; removing a missing secret is not an error."""
        try:
            with self._vault("delete", ref):
                self._client.secrets.kv.v2.delete_metadata_and_all_versions(
                    path=self._path(ref), mount_point=self._mount
                )
        except SecretNotFound:
            pass

    def _list(self, folder: str) -> list[str]:
        """Keys under ``folder`` (sub-folders end with ``/``); empty when there are none."""
        try:
            with self._vault("list", folder):
                response = self._client.secrets.kv.v2.list_secrets(
                    path=self._path(folder), mount_point=self._mount
                )
        except SecretNotFound:
            return []
        return list(response["data"]["keys"])

    def delete_tenant(self, tenant_id: str) -> None:
        """Remove every secret of a tenant (idempotent)."""
        pending = [secret_ref(tenant_id, "")]
        while pending:
            folder = pending.pop()
            for key in self._list(folder):
                if key.endswith("/"):
                    pending.append(folder + key)
                else:
                    self.delete(folder + key)
