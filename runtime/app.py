"""Wires the runtime together: store, channel, workers, heartbeat, API and shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from typing import Any

from runtime.api import ApiError, ApiServer
from runtime.config import Env, Settings
from runtime.heartbeat import Heartbeat, worth_sending
from runtime.logs import Redactor, RingHandler, secret_values
from runtime.model import ModelClient
from runtime.owner_api import OwnerApi
from runtime.pairing import Pairing
from runtime.queue import Message, Store
from runtime.router import Router
from runtime.telegram import TelegramChannel
from runtime.whatsapp import WhatsAppChannel

log = logging.getLogger("runtime.app")

API_WAIT = 120.0
IDLE_POLL = 1.0  # also picks up messages whose retry backoff has expired


class App:
    """One runtime process."""

    def __init__(self, env: Env, settings: Settings, ring: RingHandler) -> None:
        self.env = env
        self.settings = settings
        self.ring = ring
        self.started = time.time()
        self.store = Store(os.path.join(env.home, "tinyagi.db"))
        self.pairing = Pairing(env.home, self.store)
        self.router = Router(
            settings,
            self.store,
            ModelClient(env.openai_base_url, env.openai_api_key, timeout=env.model_timeout),
        )
        self.telegram: TelegramChannel | None = None
        token = env.telegram_token or settings.file_telegram_token
        if "telegram" in settings.channels and token:
            self.telegram = TelegramChannel(
                token,
                env.telegram_api_base,
                self.store,
                self.pairing,
                self.notify,
                env.telegram_poll_timeout,
            )
        self.discord: Any = None
        if "discord" in settings.channels and env.discord_token:
            from runtime.discord import DiscordChannel  # imports websockets: only when used

            self.discord = DiscordChannel(
                env.discord_token, env.discord_api_base, env.discord_gateway_url,
                self.store, self.pairing, self.notify,
            )  # fmt: skip
        self.whatsapp: WhatsAppChannel | None = None
        if "whatsapp" in settings.channels and env.whatsapp_token and env.whatsapp_phone_number_id:
            self.whatsapp = WhatsAppChannel(
                env.whatsapp_token, env.whatsapp_phone_number_id, env.whatsapp_graph_base,
                self.store, self.pairing, self.notify,
            )  # fmt: skip
        self.api = ApiServer(env.api_token)
        # The secrets arrive in a file or a pipe, not in os.environ: redact what env holds.
        redactor = Redactor(secret_values(os.environ))
        delivered_secrets = (env.discord_token, env.whatsapp_token)
        for delivered in (
            env.api_token,
            env.telegram_token,
            env.openai_api_key,
            *delivered_secrets,
        ):
            if delivered:
                redactor.add(delivered)
        OwnerApi(self.store, self.pairing, redactor).register(self.api)
        self._wake = asyncio.Event()
        self._stopping = False
        self._waiters: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._register_routes()

    def notify(self) -> None:
        """Wake idle workers: something was enqueued."""
        self._wake.set()
        self._wake.clear()

    async def run(self) -> None:
        """Run until SIGTERM/SIGINT, then shut down cleanly."""
        recovered = self.store.recover()
        for agent in self.settings.agents.values():
            self.router.apply_reset_flag(agent)  # a reset asked while stopped purges now
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.api.start(self.env.api_host, self.env.api_port)
        background = [
            asyncio.create_task(Heartbeat(self.settings, self.store, self.notify).run(a))
            for a in Heartbeat(self.settings, self.store, self.notify).agents()
        ]
        if self.telegram:
            background.append(asyncio.create_task(self.telegram.run()))
        if self.discord:
            background.append(asyncio.create_task(self.discord.run()))
        workers = [asyncio.create_task(self._worker()) for _ in range(self.env.workers)]
        log.info(
            "runtime started",
            extra={
                "port": self.env.api_port,
                "recovered": recovered,
                "agents": list(self.settings.agents),
            },
        )
        await stop.wait()
        await self._shutdown(background, workers)

    async def _shutdown(self, background: list[asyncio.Task], workers: list[asyncio.Task]) -> None:
        log.info("shutting down")
        self._stopping = True
        for task in background:
            task.cancel()
        self._wake.set()
        _, late = await asyncio.wait(workers, timeout=self.env.shutdown_grace)
        for task in late:
            task.cancel()  # the worker requeues its message on cancellation
        await asyncio.gather(*background, *workers, return_exceptions=True)
        await self.api.stop()
        self.store.close()
        log.info("stopped", extra={"requeued": len(late)})

    async def _worker(self) -> None:
        while not self._stopping:
            message = self.store.claim()
            if message is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), IDLE_POLL)
                continue
            await self._process(message)

    async def _process(self, message: Message) -> None:
        try:
            capped = message.channel != "heartbeat" and message.reply is None
            wait = self.router.cap_wait(message.conversation) if capped else 0.0
            if wait > 0:
                # Over the hourly cap: the message waits its turn instead of being refused.
                self.store.defer(message.id, time.time() + wait)
                log.info("message deferred by the hourly cap", extra={"message_id": message.id})
                return
            if message.reply is None:
                reply = await self.router.handle(
                    message.conversation,
                    message.text,
                    message.agent,
                    capped=message.channel != "heartbeat",
                )
                text, agent, failed = reply.text, reply.agent, reply.model_failed
                self.store.save_reply(message.id, text, agent)
            else:  # a delivery retry: the model already answered
                text, agent, failed = message.reply, message.reply_agent or "", False
            await self._deliver(message, text, agent, failed)
            self.store.complete(message.id, answered=bool(agent) and not failed)
        except asyncio.CancelledError:
            self.store.requeue(message.id)
            log.info("message requeued at shutdown", extra={"message_id": message.id})
            raise
        except Exception as exc:
            state = self.store.fail(message.id, f"{exc.__class__.__name__}: {exc}")
            log.warning(
                "message failed",
                extra={
                    "message_id": message.id,
                    "state": state,
                    "error": f"{exc.__class__.__name__}: {exc}",
                },
            )

    async def _deliver(self, message: Message, text: str, agent: str, failed: bool) -> None:
        if message.channel in ("telegram", "discord", "whatsapp") and message.chat_id:
            await self._send(message.channel, message.chat_id, text)
        elif message.channel == "heartbeat":
            log.info(
                "heartbeat result", extra={"agent": agent, "chars": len(text), "failed": failed}
            )
            owner = self.pairing.owner()
            if owner and not failed and worth_sending(text):
                await self._send_owner(owner, text)
        waiter = self._waiters.pop(message.id, None)
        if waiter and not waiter.done():
            waiter.set_result({"reply": text, "agent": agent, "message_id": message.id})
        log.info("message completed", extra={"message_id": message.id, "channel": message.channel})

    def _channel(self, kind: str) -> Any:
        return {"telegram": self.telegram, "discord": self.discord, "whatsapp": self.whatsapp}.get(
            kind
        )

    async def _send(self, kind: str, chat_id: str, text: str) -> None:
        channel = self._channel(kind)
        if channel is None:
            raise RuntimeError(f"{kind} is not connected")
        await channel.send(chat_id, text)

    async def _send_owner(self, owner: str, text: str) -> None:
        """A heartbeat notice to the owner on the owner's own channel (by identity prefix).

        A Discord owner's identity is a user id, not a channel: only Telegram and WhatsApp
        owners, whose identity is also where to write, get notices.
        """
        kind, _, ident = owner.rpartition(":")
        if kind in ("", "whatsapp") and self._channel(kind or "telegram") is not None:
            await self._send(kind or "telegram", ident, text)

    def _register_routes(self) -> None:
        self.api.route("GET", "/healthz", self._healthz)
        self.api.route("GET", "/api/status", self._status)
        self.api.route("POST", "/api/message", self._message)
        self.api.route("POST", "/api/reset", self._reset)
        self.api.route("GET", "/api/logs", self._logs)
        self.api.route("POST", "/api/backup", self._backup)
        self.api.route("POST", "/api/whatsapp", self._whatsapp)

    async def _healthz(self, body: dict, query: dict) -> dict[str, Any]:
        """Liveness only: the process is up and serving."""
        return {"ok": True}

    async def _status(self, body: dict, query: dict) -> dict[str, Any]:
        """Health: ok only when every enabled channel is running and recently talked."""
        channels = {}
        if "telegram" in self.settings.channels:
            channels["telegram"] = self._telegram_status()
        if "discord" in self.settings.channels:
            channels["discord"] = self._discord_status()
        if "whatsapp" in self.settings.channels:
            wa = self.whatsapp
            channels["whatsapp"] = (
                {"running": wa.healthy()}
                | ({"error": wa.auth_error, "auth_failed": True} if wa.auth_error else {})
                if wa
                else {"running": False, "error": "no access token"}
            )
        last = self.store.last_message_at()
        last_iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(last)) if last else None
        return {
            "ok": all(c["running"] for c in channels.values()),
            "uptime": round(time.time() - self.started, 3),
            "channels": channels,
            "queue": self.store.counts(),
            "last_message_at": last_iso,
        }

    def _telegram_status(self) -> dict[str, Any]:
        channel = self.telegram
        if channel is None:
            return {"running": False, "error": "no bot token"}
        stale_after = self.env.telegram_stale_after
        status: dict[str, Any] = {"running": channel.healthy(stale_after)}
        if channel.last_ok is not None:
            status["last_ok_age_s"] = round(time.monotonic() - channel.last_ok, 1)
        if not status["running"] and channel.running:
            status["error"] = channel.last_error or f"no successful poll in {stale_after}s"
        return status

    def _discord_status(self) -> dict[str, Any]:
        channel = self.discord
        if channel is None:
            return {"running": False, "error": "no bot token"}
        stale_after = self.env.telegram_stale_after
        status: dict[str, Any] = {"running": channel.healthy(stale_after)}
        if channel.last_ok is not None:
            status["last_ok_age_s"] = round(time.monotonic() - channel.last_ok, 1)
        if not status["running"]:
            status["error"] = channel.fatal or channel.last_error or "connecting"
        if channel.auth_failed:
            status["auth_failed"] = True
        return status

    async def _whatsapp(self, body: dict, query: dict) -> dict[str, Any]:
        """Messages the control plane's webhook verified, pushed here to be queued."""
        if self.whatsapp is None:
            raise ApiError(409, "whatsapp: not enabled")
        messages = body.get("messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise ApiError(400, "messages: a list of objects is required")
        return {"ok": True, **(await self.whatsapp.inbound(messages))}

    async def _message(self, body: dict, query: dict) -> dict[str, Any]:
        """Process a message through the queue as if from a channel and return the reply."""
        text, agent = body.get("message"), body.get("agent")
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, "message: required")
        if agent is not None and agent not in self.settings.agents:
            raise ApiError(400, "agent: unknown agent")
        sender_id = str(body.get("sender_id") or "api")
        message_id = self.store.enqueue(
            "api",
            f"api:{sender_id}",
            text,
            sender=body.get("sender"),
            sender_id=sender_id,
            agent=agent,
        )
        waiter = asyncio.get_running_loop().create_future()
        self._waiters[message_id] = waiter
        self.notify()
        try:
            return await asyncio.wait_for(waiter, API_WAIT)
        except TimeoutError:
            raise ApiError(504, f"message {message_id} is still queued") from None
        finally:
            self._waiters.pop(message_id, None)

    async def _reset(self, body: dict, query: dict) -> dict[str, Any]:
        """Reset one agent's (or every agent's) session; full also clears memory/."""
        agent, full = body.get("agent"), bool(body.get("full", False))
        if agent is not None and agent not in self.settings.agents:
            raise ApiError(400, "agent: unknown agent")
        targets = [self.settings.agents[agent]] if agent else list(self.settings.agents.values())
        for target in targets:
            write_reset_flag(target.workdir, full)
            self.router.apply_reset_flag(target)
        return {"ok": True, "reset": [t.id for t in targets], "full": full}

    async def _backup(self, body: dict, query: dict) -> dict[str, Any]:
        """A consistent copy of the queue database inside the home (``.backup/tinyagi.db``),
        for the control plane's snapshot of the home to carry instead of the live files."""
        folder = os.path.join(self.env.home, BACKUP_DIR)
        os.makedirs(folder, mode=0o700, exist_ok=True)
        size = self.store.backup_to(os.path.join(folder, "tinyagi.db"))
        log.info("database backup written", extra={"bytes": size})
        return {"ok": True, "path": f"{BACKUP_DIR}/tinyagi.db", "bytes": size}

    async def _logs(self, body: dict, query: dict) -> dict[str, Any]:
        """Recent log lines (already redacted), oldest first."""
        try:
            count = min(int((query.get("lines") or ["100"])[0]), 1000)
        except ValueError:
            raise ApiError(400, "lines: must be an integer") from None
        return {"ok": True, "lines": self.ring.tail(count)}


BACKUP_DIR = ".backup"


def write_reset_flag(workdir: str, full: bool) -> None:
    """Write <workdir>/reset_flag ('full' also clears memory/ when applied)."""
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "reset_flag"), "w", encoding="utf-8") as handle:
        handle.write("full" if full else "")
