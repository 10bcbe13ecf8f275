"""The secret store boundary.

Secrets (Telegram bot tokens, BYOK provider keys, gateway and runtime API tokens)
live only in a secret store; the database keeps references. References are
deterministic (``tenants/{tenant_id}/{name}``) so a retried activity overwrites
rather than duplicates.
"""

from __future__ import annotations

from typing import Protocol

from core.errors import NotFound


class SecretNotFound(NotFound):
    default_code = "secret_not_found"


def secret_ref(tenant_id: str, name: str) -> str:
    """The deterministic reference of a tenant's secret called ``name``."""
    return f"tenants/{tenant_id}/{name}"


class SecretStore(Protocol):
    """Where secrets live; implementations: ``local`` (database, envelope encryption), ``vault``."""

    def put(self, tenant_id: str, name: str, value: str) -> str:
        """Store (or overwrite) a secret and return its reference."""
        ...

    def get(self, ref: str) -> str:
        """The plaintext of ``ref``; ``SecretNotFound`` when absent."""
        ...

    def delete(self, ref: str) -> None:
        """Remove ``ref``; removing a missing secret is not an error."""
        ...

    def delete_tenant(self, tenant_id: str) -> None:
        """Remove every secret of a tenant (idempotent)."""
        ...
