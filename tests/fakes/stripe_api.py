"""A local Stripe API subset that the real stripe SDK talks to, plus signed webhook events.

Serves what ``core.billing.StripeBilling`` uses: ``POST /v1/checkout/sessions``,
``POST /v1/billing_portal/sessions``, ``GET /v1/subscriptions/{id}`` and
``POST /v1/customers``, with form-encoded bodies exactly as the SDK sends them. Like
Stripe it checks the bearer key, honours ``Idempotency-Key`` (same key and parameters
-> the same object, replayed; same key, other parameters -> ``idempotency_error``) and
insists on the pinned ``Stripe-Version``. Every request is recorded in ``requests``.

Deliberately hostile where it helps: a wrong key gets a 401 whose message echoes the
key in full (real Stripe masks it), so tests prove our errors never leak it.

``complete_checkout`` and friends change state the way Stripe would and return the
webhook events Stripe would send; ``make_event`` and ``sign`` build and sign any event
with Stripe's real scheme (``t=<ts>,v1=<hex HMAC-SHA256 of "<ts>.<payload>">``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from core.billing.stripe_client import STRIPE_API_VERSION

MONTH_S = 30 * 24 * 3600


def make_event(
    type: str, data_object: dict[str, Any], created: int | None = None, id: str | None = None
) -> dict[str, Any]:
    """A Stripe event envelope around ``data_object``, as Stripe posts it to a webhook."""
    return {
        "id": id or _new_id("evt"),
        "object": "event",
        "api_version": STRIPE_API_VERSION,
        "created": _now(created),
        "data": {"object": data_object},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": type,
    }


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header for ``payload``: ``t=<ts>,v1=<hmac>``."""
    ts = _now(timestamp)
    signed = f"{ts}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={ts},v1={digest}"


def signed(event: dict[str, Any], secret: str, timestamp: int | None = None) -> tuple[bytes, str]:
    """The raw body and signature header of ``event``, ready to POST."""
    payload = json.dumps(event).encode()
    return payload, sign(payload, secret, timestamp)


def decode_form(raw: str) -> dict[str, Any]:
    """Stripe's form encoding (``a[b][0][c]=v``) back into nested dicts and lists."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(raw, keep_blank_values=True):
        parts = re.findall(r"[^\[\]]+", key)
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return _listify(root)


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    if node and all(k.isdigit() for k in node):
        return [_listify(node[k]) for k in sorted(node, key=int)]
    return {k: _listify(v) for k, v in node.items()}


def _now(ts: int | None) -> int:
    return int(ts if ts is not None else time.time())


def _new_id(prefix: str) -> str:
    return f"{prefix}_test_{secrets.token_hex(12)}"


@dataclass
class RecordedRequest:
    """One request as the fake saw it (headers lower-cased, body decoded)."""

    method: str
    path: str
    headers: dict[str, str]
    params: dict[str, Any]


class StripeFailure(Exception):
    """An error reply in Stripe's shape."""

    def __init__(self, status: int, type: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.type, self.message, self.param = status, type, message, param

    def body(self) -> dict[str, Any]:
        """The JSON error body Stripe would send."""
        error = {"type": self.type, "message": self.message}
        if self.param:
            error["param"] = self.param
        return {"error": error}


class FakeStripe:
    """In-memory Stripe: customers, checkout and portal sessions, subscriptions, invoices."""

    def __init__(
        self,
        api_key: str = "sk_test_fake_0123456789abcdef",
        prices: dict[str, str] | None = None,
        api_version: str = STRIPE_API_VERSION,
    ) -> None:
        self.api_key = api_key
        self.api_version = api_version
        self.prices = dict(prices or {})  # price id -> plan id (for reading tests)
        self.customers: dict[str, dict[str, Any]] = {}
        self.checkout_sessions: dict[str, dict[str, Any]] = {}
        self.portal_sessions: dict[str, dict[str, Any]] = {}
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.invoices: dict[str, dict[str, Any]] = {}
        self.requests: list[RecordedRequest] = []
        self.outbox: list[dict[str, Any]] = []  # events API calls caused, for tests to deliver
        self.outage = False  # True: every request answers 500 api_error
        self._idempotent: dict[str, tuple[str, dict[str, Any], int, dict[str, Any]]] = {}
        self._lock = threading.RLock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        # A short poll interval keeps stop() (and so each test's teardown) quick.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        """Base URL for ``TCC_STRIPE_API_BASE``."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeStripe:
        """Serve in a background thread; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeStripe:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- HTTP dispatch ---------------------------------------------------------------

    def handle(self, method: str, path: str, headers: dict[str, str], raw: str) -> tuple[int, Any]:
        """Route one request; returns (status, JSON body) and records it."""
        params = decode_form(raw) if method == "POST" else decode_form(urlsplit(path).query)
        path = urlsplit(path).path
        with self._lock:
            self.requests.append(RecordedRequest(method, path, headers, params))
            try:
                self._check_headers(headers)
                key = headers.get("idempotency-key")
                if method == "POST" and key:
                    return self._idempotent_call(key, path, params)
                return 200, self._route(method, path, params)
            except StripeFailure as failure:
                return failure.status, failure.body()

    def _check_headers(self, headers: dict[str, str]) -> None:
        if self.outage:
            raise StripeFailure(500, "api_error", "fake outage")
        auth = headers.get("authorization", "")
        if auth != f"Bearer {self.api_key}":
            key = auth.removeprefix("Bearer ")
            raise StripeFailure(401, "invalid_request_error", f"Invalid API Key provided: {key}")
        version = headers.get("stripe-version")
        if version != self.api_version:
            raise StripeFailure(
                400, "invalid_request_error", f"Stripe-Version {version!r} is not pinned here"
            )

    def _idempotent_call(self, key: str, path: str, params: dict[str, Any]) -> tuple[int, Any]:
        if key in self._idempotent:
            seen_path, seen_params, status, body = self._idempotent[key]
            if (seen_path, seen_params) != (path, params):
                raise StripeFailure(
                    400,
                    "idempotency_error",
                    "Keys for idempotent requests can only be used with the same parameters.",
                )
            return status, body
        try:
            status, body = 200, self._route("POST", path, params)
        except StripeFailure as failure:
            if failure.status >= 500:
                raise  # Stripe does not save 5xx results: a retry runs again
            status, body = failure.status, failure.body()
        self._idempotent[key] = (path, params, status, body)
        return status, body

    def _route(self, method: str, path: str, params: dict[str, Any]) -> dict[str, Any]:
        if method == "POST" and path == "/v1/customers":
            return self._create_customer(params)
        if method == "POST" and path == "/v1/checkout/sessions":
            return self._create_checkout(params)
        if method == "POST" and path == "/v1/billing_portal/sessions":
            return self._create_portal(params)
        match = re.fullmatch(r"/v1/checkout/sessions/([^/]+)(/expire)?", path)
        if match and (method == "GET" or match.group(2)):
            session = self._get(self.checkout_sessions, match.group(1), "checkout session")
            if match.group(2):
                if session["status"] != "open":
                    raise StripeFailure(400, "invalid_request_error", "Session is not open.")
                session["status"] = "expired"
            return _public(session)
        match = re.fullmatch(r"/v1/subscriptions/([^/]+)", path)
        if method == "POST" and match:
            return self._modify_subscription(match.group(1), params)
        match = re.fullmatch(r"/v1/checkout/sessions/([^/]+)/line_items", path)
        if method == "GET" and match:
            return self._line_items(match.group(1))
        match = re.fullmatch(r"/v1/subscriptions/([^/]+)", path)
        if method == "GET" and match:
            return self._get(self.subscriptions, match.group(1), "subscription")
        if method == "DELETE" and match:  # cancel now (Stripe sends the deleted event)
            sub = self._get(self.subscriptions, match.group(1), "subscription")
            if sub["status"] == "canceled":
                raise StripeFailure(
                    400, "invalid_request_error", "This subscription is already canceled."
                )
            sub["status"] = "canceled"
            return _public(sub)
        raise StripeFailure(404, "invalid_request_error", f"Unrecognized request URL ({path}).")

    # --- resources -------------------------------------------------------------------

    def _get(self, table: dict[str, dict[str, Any]], id: str, kind: str) -> dict[str, Any]:
        if id not in table:
            raise StripeFailure(404, "invalid_request_error", f"No such {kind}: '{id}'", "id")
        return table[id]

    def _create_customer(self, params: dict[str, Any]) -> dict[str, Any]:
        customer = {
            "id": _new_id("cus"),
            "object": "customer",
            "email": params.get("email"),
            "metadata": params.get("metadata") or {},
        }
        self.customers[customer["id"]] = customer
        return customer

    def _create_checkout(self, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("mode") != "subscription":
            raise StripeFailure(400, "invalid_request_error", "Only subscription mode", "mode")
        items = params.get("line_items") or []
        if not items or not items[0].get("price"):
            raise StripeFailure(400, "invalid_request_error", "Missing line_items", "line_items")
        price = items[0]["price"]
        if price not in self.prices:
            raise StripeFailure(
                400, "invalid_request_error", f"No such price: '{price}'", "line_items[0][price]"
            )
        if params.get("customer"):
            self._get(self.customers, params["customer"], "customer")
        session_id = _new_id("cs")
        session = {
            "id": session_id,
            "object": "checkout.session",
            "mode": "subscription",
            "status": "open",
            "payment_status": "unpaid",
            "url": f"{self.url}/checkout/pay/{session_id}",
            "client_reference_id": params.get("client_reference_id"),
            "customer": params.get("customer"),
            "customer_email": params.get("customer_email"),
            "metadata": params.get("metadata") or {},
            "subscription": None,
            "success_url": params.get("success_url"),
            "cancel_url": params.get("cancel_url"),
            "created": int(time.time()),
            "_line_items": items,
            "_subscription_data": params.get("subscription_data") or {},
        }
        self.checkout_sessions[session_id] = session
        return _public(session)

    def _modify_subscription(self, sub_id: str, params: dict[str, Any]) -> dict[str, Any]:
        """A plan change through the API: the event it causes goes to ``outbox``."""
        sub = self._get(self.subscriptions, sub_id, "subscription")
        items = params.get("items") or []
        if not items or items[0].get("id") != sub["items"]["data"][0]["id"]:
            raise StripeFailure(400, "invalid_request_error", "Unknown item", "items[0][id]")
        price = items[0].get("price")
        if price not in self.prices:
            raise StripeFailure(400, "invalid_request_error", f"No such price: '{price}'")
        self.outbox.append(self.update_subscription(sub_id, price=price))
        return dict(sub)

    def _line_items(self, session_id: str) -> dict[str, Any]:
        session = self._get(self.checkout_sessions, session_id, "checkout session")
        data = [
            {
                "id": _new_id("li"), "object": "item", "quantity": item.get("quantity", 1),
                "price": {"id": item["price"], "object": "price"},
            }
            for item in session["_line_items"]
        ]  # fmt: skip
        return {"object": "list", "data": data, "has_more": False, "url": "/v1/line_items"}

    def _create_portal(self, params: dict[str, Any]) -> dict[str, Any]:
        customer = params.get("customer")
        if not customer:
            raise StripeFailure(400, "invalid_request_error", "Missing customer", "customer")
        self._get(self.customers, customer, "customer")
        portal = {
            "id": _new_id("bps"),
            "object": "billing_portal.session",
            "customer": customer,
            "return_url": params.get("return_url"),
            "url": f"{self.url}/portal/{customer}",
        }
        self.portal_sessions[portal["id"]] = portal
        return portal

    # --- what Stripe does on its own, with the events it sends -------------------------

    def complete_checkout(self, session_id: str, created: int | None = None) -> list[dict]:
        """Pay a checkout session: customer, subscription, paid invoice, and their events."""
        ts = _now(created)
        with self._lock:
            session = self.checkout_sessions[session_id]
            customer_id = (
                session["customer"]
                or self._create_customer({"email": session["customer_email"]})["id"]
            )
            sub = self._new_subscription(session, customer_id, ts)
            invoice = self._new_invoice(sub, "paid", ts)
            session.update(status="complete", payment_status="paid")
            session.update(customer=customer_id, subscription=sub["id"])
            return [
                make_event("checkout.session.completed", _public(session), ts),
                make_event("customer.subscription.created", dict(sub), ts),
                make_event("invoice.paid", dict(invoice), ts),
            ]

    def _new_subscription(self, session: dict[str, Any], customer_id: str, ts: int) -> dict:
        price = session["_line_items"][0]["price"]
        sub_id = _new_id("sub")
        sub = {
            "id": sub_id,
            "object": "subscription",
            "customer": customer_id,
            "status": "active",
            "metadata": dict(session["_subscription_data"].get("metadata") or {}),
            "cancel_at_period_end": False,
            "created": ts,
            "items": {"object": "list", "data": [_item(price, ts)]},
        }
        self.subscriptions[sub_id] = sub
        return sub

    def _new_invoice(self, sub: dict[str, Any], status: str, ts: int) -> dict[str, Any]:
        invoice = {
            "id": _new_id("in"),
            "object": "invoice",
            "customer": sub["customer"],
            "status": status,
            "created": ts,
            # Since the 2025 API versions the subscription link lives under "parent".
            "parent": {
                "type": "subscription_details",
                "subscription_details": {
                    "subscription": sub["id"],
                    "metadata": dict(sub["metadata"]),
                },
            },
        }
        self.invoices[invoice["id"]] = invoice
        return invoice

    def update_subscription(
        self,
        sub_id: str,
        *,
        price: str | None = None,
        status: str | None = None,
        created: int | None = None,
    ) -> dict[str, Any]:
        """Change price and/or status; returns ``customer.subscription.updated``."""
        ts = _now(created)
        with self._lock:
            sub = self.subscriptions[sub_id]
            if price is not None:
                sub["items"]["data"] = [_item(price, ts)]
            if status is not None:
                sub["status"] = status
            return make_event("customer.subscription.updated", json.loads(json.dumps(sub)), ts)

    def cancel_subscription(self, sub_id: str, created: int | None = None) -> dict[str, Any]:
        """Cancel now; returns ``customer.subscription.deleted``."""
        ts = _now(created)
        with self._lock:
            sub = self.subscriptions[sub_id]
            sub["status"] = "canceled"
            return make_event("customer.subscription.deleted", json.loads(json.dumps(sub)), ts)

    def fail_payment(self, sub_id: str, created: int | None = None) -> dict[str, Any]:
        """A renewal charge fails; returns ``invoice.payment_failed``."""
        ts = _now(created)
        with self._lock:
            sub = self.subscriptions[sub_id]
            sub["status"] = "past_due"
            return make_event("invoice.payment_failed", self._new_invoice(sub, "open", ts), ts)

    def pay_invoice(self, sub_id: str, created: int | None = None) -> dict[str, Any]:
        """A renewal charge succeeds; returns ``invoice.paid``."""
        ts = _now(created)
        with self._lock:
            sub = self.subscriptions[sub_id]
            sub["status"] = "active"
            return make_event("invoice.paid", self._new_invoice(sub, "paid", ts), ts)


def _item(price: str, ts: int) -> dict[str, Any]:
    # Since the 2025 API versions billing periods live on the item, not the subscription.
    return {
        "id": _new_id("si"),
        "object": "subscription_item",
        "price": {"id": price, "object": "price"},
        "quantity": 1,
        "current_period_start": ts,
        "current_period_end": ts + MONTH_S,
    }


def _public(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if not k.startswith("_")}


def _handler_for(fake: FakeStripe) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            """Keep test output quiet."""

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode() if length else ""
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, payload = fake.handle(self.command, self.path, headers, raw)
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Request-Id", _new_id("req"))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_DELETE = _serve

    return Handler
