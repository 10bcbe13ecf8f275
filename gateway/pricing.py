"""The price table: USD per million tokens, per model.

Costs are computed in integer micro-dollars (``cost_micros``) so sums are exact.
One token at ``p`` USD per million tokens costs exactly ``p`` micro-dollars, so
``cost_micros = round(input_tokens * p_in + output_tokens * p_out)`` (half up).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from core.model_catalog import DEMO_ENTRY, CatalogModel, default_models


@dataclass(frozen=True)
class Price:
    """USD per million input and output tokens."""

    input_per_m: Decimal
    output_per_m: Decimal


def _price(model: CatalogModel) -> Price:
    return Price(model.input_per_m, model.output_per_m)


# The default catalog's prices (OpenRouter ids); an operator's TCC_MODEL_CATALOG carries its own.
PRICES: dict[str, Price] = {m.id: _price(m) for m in (DEMO_ENTRY, *default_models())}


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
