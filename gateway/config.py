"""Gateway-only knobs that are not (yet) part of ``core.settings.Settings``.

Read from ``TCC_GATEWAY_*`` environment variables so operators tune them the
same way as every other setting.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class GatewayConfig:
    """Caching, breaker, pooling and metering knobs of the gateway."""

    # Revocation takes effect within this many seconds on every replica.
    auth_cache_ttl_s: float = 5.0
    breaker_failures: int = 3
    breaker_cooldown_s: float = 30.0
    connect_timeout_s: float = 5.0
    max_connections: int = 256  # per upstream host
    # Idle upstream connections older than this are not reused (servers drop them).
    keepalive_expiry_s: float = 15.0
    flush_interval_s: float = 0.1
    flush_max_rows: int = 500
    # Request bodies above this are refused with 413 before they are read.
    max_body_bytes: int = 10 * 1024 * 1024
    # Prompt bodies are personal data: only ever logged when explicitly asked.
    log_prompts: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> GatewayConfig:
        """Build from ``TCC_GATEWAY_<FIELD>`` variables, defaults for the rest."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get(f"TCC_GATEWAY_{f.name.upper()}")
            if raw is None:
                continue
            default = getattr(cls, f.name)
            if isinstance(default, bool):
                values[f.name] = raw.strip().lower() in {"1", "true", "yes", "on"}
            else:
                values[f.name] = type(default)(raw)
        return cls(**values)  # type: ignore[arg-type]
