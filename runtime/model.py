"""The model client: OpenAI chat-completions with timeouts, retries and polite failures."""

from __future__ import annotations

import asyncio
import logging

from runtime.httpclient import HttpError, request_json

log = logging.getLogger("runtime.model")

RETRIES = 2
RETRY_DELAYS = (0.5, 1.5)
UNREACHABLE = "Sorry — I can't reach my model right now. Please try again in a minute."
# Specific, actionable replies for gateway answers that retrying cannot fix.
STATUS_REPLIES = {
    401: "Sorry — my model credentials were rejected. The bot owner needs to check the model key.",
    403: "Sorry — I'm not allowed to use my model. The bot owner needs to check the plan or key.",
    402: "Sorry — the model budget for this bot is used up. The bot owner needs to top it up.",
    429: "Sorry — I'm getting too many requests right now. Please try again in a minute.",
}


class ModelUnavailable(Exception):
    """The model could not answer; `reply` is the polite text to send the user instead."""

    def __init__(self, reply: str, reason: str) -> None:
        super().__init__(reason)
        self.reply = reply


class ModelClient:
    """Calls {base_url}/chat/completions and returns the assistant text."""

    def __init__(self, base_url: str, api_key: str | None, timeout: float = 60.0) -> None:
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._api_key = api_key
        self._timeout = timeout

    async def complete(
        self,
        model: str,
        messages: list[dict[str, str]],
        agent: str | None = None,
        handoff_from: str | None = None,
    ) -> str:
        """Return the reply text; raise ModelUnavailable after retries or on a final status.

        ``agent`` and ``handoff_from`` (the teammate that handed the work over) go to the
        gateway as headers, for the owner's per-agent and hand-off analytics.
        """
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        if agent:
            headers["X-TinyClaw-Agent"] = agent
        if handoff_from:
            headers["X-TinyClaw-Handoff-From"] = handoff_from
        payload = {"model": model, "messages": messages}
        reason = "unknown"
        for attempt in range(RETRIES + 1):
            if attempt:
                await asyncio.sleep(RETRY_DELAYS[min(attempt - 1, len(RETRY_DELAYS) - 1)])
            try:
                response = await request_json(
                    "POST", self._url, payload, headers=headers, timeout_s=self._timeout
                )
            except HttpError as exc:
                reason = f"transport: {exc}"
                log.warning("model call failed", extra={"model": model, "reason": reason})
                continue
            if response.status in STATUS_REPLIES:
                log.warning("model call refused", extra={"model": model, "status": response.status})
                raise ModelUnavailable(STATUS_REPLIES[response.status], f"status {response.status}")
            if response.status >= 500:
                reason = f"status {response.status}"
                log.warning("model call failed", extra={"model": model, "reason": reason})
                continue
            return _extract_text(response.json(), response.status)
        raise ModelUnavailable(UNREACHABLE, reason)


def _extract_text(data: object, status: int) -> str:
    """Pull choices[0].message.content out of a chat-completions answer."""
    try:
        if status >= 400:
            raise ValueError
        content = data["choices"][0]["message"]["content"]  # type: ignore[index]
        return content if isinstance(content, str) else ""
    except (KeyError, IndexError, TypeError, ValueError):
        log.warning("model answer unusable", extra={"status": status})
        raise ModelUnavailable(UNREACHABLE, f"unusable answer (status {status})") from None
