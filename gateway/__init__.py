"""The provider gateway: an OpenAI- and Anthropic-compatible proxy for tenant runtimes.

Runtimes call it with a per-tenant gateway token (``tcgw_...``), never a real
provider key. A request flows::

    authenticate (cached)  ->  plan allowlist  ->  rate limit  ->  monthly budget
        ->  route: demo model | managed upstreams (failover + breaker) | BYOK key
        ->  relay (SSE passthrough or JSON)  ->  meter (batched usage_events row)

Public surface: ``gateway.app.create_app``; the control plane uses ``gateway.control`` (tokens:
issue, revoke, authenticate; daily roll-up, dashboard summary) and nothing else.
"""
