"""Which runtime environment variables are configuration and which are secrets."""

from __future__ import annotations

from collections.abc import Mapping

# Configuration a runtime may see in its container config; everything else is a secret.
PUBLIC_ENV = frozenset(
    {
        "OPENAI_BASE_URL",
        "ANTHROPIC_BASE_URL",
        "TELEGRAM_API_BASE",
        "TELEGRAM_POLL_TIMEOUT",
        "DISCORD_API_BASE",
        "DISCORD_GATEWAY_URL",
        "WHATSAPP_PHONE_NUMBER_ID",
        "WHATSAPP_GRAPH_BASE",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
    }
)

SECRET_SUFFIXES = ("_TOKEN", "_KEY", "_SECRET", "_PASSWORD")


def split_env(env: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(public env for the container config, secrets for the file); unknown names are secret."""
    public = {
        k: v
        for k, v in env.items()
        if (k in PUBLIC_ENV or k.startswith("TINYAGI_")) and not k.endswith(SECRET_SUFFIXES)
    }
    secrets = {k: v for k, v in env.items() if k not in public}
    return public, secrets
