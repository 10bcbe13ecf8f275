"""Cursor pagination, the same on every list route.

A list answers a JSON array of at most ``limit`` items. When more follow, the answer
carries the next page's address in a ``Link: <...>; rel="next"`` header (RFC 8288, as
GitHub does) and its opaque cursor in ``X-Next-Cursor``; the last page has neither.
Cursors name the last item seen, not an offset, so rows added or removed between two
pages neither repeat nor skip an item.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Query, Request, Response

from core.errors import InvalidInput

T = TypeVar("T")
DEFAULT_LIMIT = 50
MAX_LIMIT = 500


def encode_cursor(key: Any) -> str:
    raw = json.dumps([key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> Any:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        value = None
    if not (isinstance(value, list) and len(value) == 1):
        raise _bad_cursor()
    return value[0]


def _bad_cursor() -> InvalidInput:
    return InvalidInput(
        "This cursor is not one we handed out: take it from X-Next-Cursor.",
        code="bad_cursor",
        field="cursor",
    )


@dataclass
class PageParams:
    """``limit`` and the decoded ``cursor`` of a list request, and where to put the next link."""

    limit: int
    after: Any
    request: Request
    response: Response

    def next_page(self, last_key: Any | None) -> None:
        """Announce the page after the item whose key is ``last_key`` (None: this was the last)."""
        if last_key is None:
            return
        cursor = encode_cursor(last_key)
        url = self.request.url.include_query_params(cursor=cursor, limit=self.limit)
        self.response.headers["Link"] = f'<{url}>; rel="next"'
        self.response.headers["X-Next-Cursor"] = cursor

    def slice(
        self, items: Sequence[T], key: Callable[[T], Any], *, descending: bool = False
    ) -> list[T]:
        """This page of ``items`` (sorted by ``key``), and the next link if any.

        ``key`` must be unique and JSON-serialisable (a string, a number or a list of them).
        """
        rest = list(items)
        if self.after is not None:
            try:
                if descending:
                    rest = [item for item in rest if key(item) < self.after]
                else:
                    rest = [item for item in rest if key(item) > self.after]
            except TypeError:  # a cursor from another list
                raise _bad_cursor() from None
        page = rest[: self.limit]
        self.next_page(key(page[-1]) if len(rest) > self.limit else None)
        return page


def page_params(
    request: Request,
    response: Response,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="items per page")] = DEFAULT_LIMIT,
    cursor: Annotated[
        str | None,
        Query(max_length=300, description="the previous page's X-Next-Cursor"),
    ] = None,
) -> PageParams:
    after = decode_cursor(cursor) if cursor else None
    return PageParams(limit=limit, after=after, request=request, response=response)


Page = Annotated[PageParams, Depends(page_params)]
