"""The price table: USD per million tokens, per model.

Costs are computed in integer micro-dollars (``cost_micros``) so sums are exact.
One token at ``p`` USD per million tokens costs exactly ``p`` micro-dollars, so
``cost_micros = round(input_tokens * p_in + output_tokens * p_out)`` (half up).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from core.plans import DEMO_MODEL


@dataclass(frozen=True)
class Price:
    """USD per million input and output tokens."""

    input_per_m: Decimal
    output_per_m: Decimal


def _p(inp: str, out: str) -> Price:
    return Price(Decimal(inp), Decimal(out))


# Model ids as routed upstream (OpenRouter naming). Keep in step with plan allowlists.
PRICES: dict[str, Price] = {
    DEMO_MODEL: _p("0", "0"),
    "openai/gpt-4o-mini": _p("0.15", "0.60"),
    "openai/gpt-4o": _p("2.50", "10.00"),
    "openai/gpt-4.1-nano": _p("0.10", "0.40"),
    "openai/gpt-4.1-mini": _p("0.40", "1.60"),
    "openai/gpt-4.1": _p("2.00", "8.00"),
    "anthropic/claude-3-haiku": _p("0.25", "1.25"),
    "anthropic/claude-3-5-haiku": _p("0.80", "4.00"),
    "anthropic/claude-3-5-sonnet": _p("3.00", "15.00"),
    "anthropic/claude-3-7-sonnet": _p("3.00", "15.00"),
    "anthropic/claude-sonnet-4": _p("3.00", "15.00"),
    "google/gemini-2.0-flash-001": _p("0.10", "0.40"),
    "meta-llama/llama-3.1-8b-instruct": _p("0.02", "0.05"),
}


def price_for(model: str) -> Price | None:
    """The price of ``model``: exact id, else the longest priced id it extends (dated ids)."""
    price = PRICES.get(model)
    if price is not None:
        return price
    best = ""
    for known in PRICES:
        if len(known) > len(best) and model.startswith(known) and model[len(known)] in "-:@":
            best = known
    return PRICES[best] if best else None


def cost_micros(price: Price | None, input_tokens: int, output_tokens: int) -> int:
    """Cost in micro-dollars; unpriced models (BYOK only) cost 0 to the platform."""
    if price is None:
        return 0
    exact = input_tokens * price.input_per_m + output_tokens * price.output_per_m
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def priced_models() -> list[str]:
    """Every model id with a price, sorted."""
    return sorted(PRICES)
