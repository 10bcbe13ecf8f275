"""Secret stores: the protocol, shared errors, and the factory chosen by configuration.

``build_secret_store(settings, db)`` returns the ``local`` store (envelope encryption
in the database, master key from a key file) or the ``vault`` store (KV v2, optional
Transit). Adapters are imported lazily so the local store never needs hvac.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.errors import ServiceUnavailable, TinyClawError
from core.secrets.base import SecretNotFound, SecretStore, secret_ref

if TYPE_CHECKING:
    from core.db import Database
    from core.settings import Settings

__all__ = [
    "SecretIntegrityError",
    "SecretNotFound",
    "SecretStore",
    "SecretStoreUnavailable",
    "build_secret_store",
    "secret_ref",
]


class SecretIntegrityError(TinyClawError):
    """Stored ciphertext failed authentication: tampered, moved, or the wrong key."""

    status_code = 500
    default_code = "secret_integrity"


class SecretStoreUnavailable(ServiceUnavailable):
    """The secret store cannot be reached or refused our credentials."""

    default_code = "secret_store_unavailable"


def build_secret_store(settings: Settings, db: Database) -> SecretStore:
    """The secret store ``settings.secret_store`` names, ready to use."""
    if settings.secret_store == "vault":  # noqa: S105 (a store kind, not a password)
        from core.secrets.vault import VaultSecretStore

        if settings.vault_token is None:
            raise SecretStoreUnavailable("TCC_VAULT_TOKEN is required for the vault secret store")
        return VaultSecretStore(
            settings.vault_url,
            settings.vault_token.get_secret_value(),
            mount=settings.vault_mount,
            transit_mount=settings.vault_transit_mount,
            transit_key=settings.vault_transit_key,
        )
    from core.secrets.local import LocalSecretStore, load_or_create_master_key

    key_file = settings.resolved_master_key_file
    # Only development may mint a master key; in production a missing key file
    # means the operator forgot to mount it, and a fresh key would orphan every blob.
    load_or_create_master_key(key_file, create=settings.is_development)
    return LocalSecretStore(db, key_file)
