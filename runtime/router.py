"""Routing: @agent/@team addressing, team hand-offs and fan-out, and the policy caps."""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from collections import deque
from dataclasses import dataclass

from runtime.config import Agent, Settings
from runtime.model import ModelClient, ModelUnavailable
from runtime.queue import Store

log = logging.getLogger("runtime.router")

ADDRESS = re.compile(r"^@([A-Za-z0-9_-]+)[\s:,]+(.*)$", re.DOTALL)
HANDOFF = re.compile(r"\[@([A-Za-z0-9_,\s-]+?):\s*(.*?)\]", re.DOTALL)
# A hard ceiling on model calls per inbound message, whatever the team shape:
# fan-out multiplies calls per level, so the depth cap alone does not bound cost.
MAX_CALLS_PER_MESSAGE = 12
HOUR = 3600.0
TOO_LONG = "Sorry — your message is too long (the limit is {limit} characters)."
DEPTH_CAP = "(Stopped: the hand-off chain reached its limit of {limit} steps.)"
TEAMMATE = "[Message from teammate @{sender}]: {text}"


@dataclass(frozen=True)
class Reply:
    """The outcome of one inbound message: the text for the user and who answered."""

    text: str
    agent: str
    model_failed: bool = False


@dataclass(frozen=True)
class Step:
    """One pending agent invocation inside a chain."""

    agent: str
    text: str
    depth: int
    sender: str | None  # the teammate who handed off, None for the user


class Router:
    """Turns one inbound message into the reply text, calling agents as needed."""

    def __init__(self, settings: Settings, store: Store, model: ModelClient) -> None:
        self._settings = settings
        self._store = store
        self._model = model

    def resolve(self, text: str) -> tuple[str, str]:
        """Return (agent_id, text) for a message, honouring a leading @agent or @team."""
        match = ADDRESS.match(text.strip())
        if match:
            name = match.group(1).lower()
            if name in self._settings.agents:
                return name, match.group(2).strip()
            if name in self._settings.teams:
                return self._settings.teams[name].leader, match.group(2).strip()
        return self._settings.default_agent, text.strip()

    def cap_wait(self, conversation: str) -> float:
        """Seconds until the conversation may get another answer under the hourly cap (0: now).

        Only answered messages count, so a burst waits in the queue and is answered as
        the window slides, instead of being refused.
        """
        hourly = self._settings.policy["max_messages_per_conversation_per_hour"]
        answered = self._store.answered_times(conversation, HOUR)
        if len(answered) < hourly:
            return 0.0
        return max(0.0, answered[len(answered) - hourly] + HOUR - time.time())

    async def handle(
        self, conversation: str, text: str, agent: str | None, capped: bool = True
    ) -> Reply:
        """Return the reply to a user message; never raises for model trouble."""
        policy = self._settings.policy
        if capped:
            limit = policy["max_message_chars"]
            if len(text) > limit:
                return Reply(TOO_LONG.format(limit=limit), "")
        if agent is None or agent not in self._settings.agents:
            agent, text = self.resolve(text)
        return await self._run_chain(conversation, Step(agent, text, 0, None))

    async def _run_chain(self, conversation: str, first: Step) -> Reply:
        """Breadth-first over hand-offs, bounded by depth and by total calls."""
        max_depth = self._settings.policy["max_chain_depth"]
        steps, outputs, notes, calls, failed = deque([first]), [], [], 0, False
        while steps:
            step = steps.popleft()
            if calls >= MAX_CALLS_PER_MESSAGE:
                notes.append(f"(Stopped: this message reached the limit of {calls} agent calls.)")
                break
            calls += 1
            try:
                raw = await self._call_agent(conversation, step)
            except ModelUnavailable as exc:
                outputs.append((step.agent, exc.reply))
                failed = True
                break
            visible, handoffs = split_handoffs(raw)
            if visible:
                outputs.append((step.agent, visible))
            for targets, text in handoffs:
                mates = self._settings.teammates(step.agent)
                for target in targets:
                    if target not in mates:
                        extra = {"agent": step.agent, "target": target}
                        log.info("hand-off outside team ignored", extra=extra)
                    elif step.depth + 1 > max_depth:
                        note = DEPTH_CAP.format(limit=max_depth)
                        if note not in notes:
                            notes.append(note)
                    else:
                        steps.append(Step(target, text, step.depth + 1, step.agent))
        return Reply(self._compose(outputs, notes), first.agent, failed)

    def _compose(self, outputs: list[tuple[str, str]], notes: list[str]) -> str:
        speakers = {agent for agent, _ in outputs}
        if len(speakers) > 1:
            parts = [f"{self._settings.agents[a].name}: {text}" for a, text in outputs]
        else:
            parts = [text for _, text in outputs]
        return "\n\n".join(parts + notes).strip() or "(no reply)"

    async def _call_agent(self, conversation: str, step: Step) -> str:
        agent = self._settings.agents[step.agent]
        self.apply_reset_flag(agent)
        user_text = step.text
        if step.sender is not None:
            user_text = TEAMMATE.format(sender=step.sender, text=step.text)
        messages = [{"role": "system", "content": self._system_prompt(agent)}]
        messages += self._store.history(conversation, agent.id)
        messages.append({"role": "user", "content": user_text})
        reply = await self._model.complete(agent.model, messages, agent.id, step.sender)
        self._store.append_turn(conversation, agent.id, user_text, reply)
        extra = {"agent": agent.id, "depth": step.depth, "chars": len(reply)}
        log.info("agent replied", extra=extra)
        return reply

    def apply_reset_flag(self, agent: Agent) -> bool:
        """Honour <workdir>/reset_flag: clear sessions (and memory/ when it says 'full')."""
        flag = os.path.join(agent.workdir, "reset_flag")
        try:
            with open(flag, encoding="utf-8") as handle:
                content = handle.read().strip()
        except FileNotFoundError:
            return False
        self._store.clear_sessions(agent.id)
        # The conversation text lives in the queue too: a reset must not leave it behind.
        self._store.purge_texts(agent.id)
        if content == "full":
            shutil.rmtree(os.path.join(agent.workdir, "memory"), ignore_errors=True)
        os.remove(flag)
        log.info("session reset", extra={"agent": agent.id, "full": content == "full"})
        return True

    def _system_prompt(self, agent: Agent) -> str:
        prompt = _read(os.path.join(agent.workdir, "AGENTS.md"))
        if prompt is None and agent.prompt_file:
            prompt = _read(os.path.join(agent.workdir, agent.prompt_file))
        prompt = prompt or agent.system_prompt or f"You are {agent.name}, a helpful assistant."
        mates = sorted(self._settings.teammates(agent.id))
        if mates:
            names = ", ".join(f"@{m} ({self._settings.agents[m].name})" for m in mates)
            prompt += (
                f"\n\nYour teammates: {names}. To hand work to a teammate, write"
                " [@teammate: message] in your reply; use [@a,b: message] to ask several."
            )
        return prompt + _skills_text(agent.workdir)


def split_handoffs(reply: str) -> tuple[str, list[tuple[list[str], str]]]:
    """Return (visible text, [(targets, message)]) from an agent reply."""
    handoffs = []
    for match in HANDOFF.finditer(reply):
        targets = [t.strip().lower() for t in match.group(1).split(",") if t.strip()]
        handoffs.append((targets, match.group(2).strip()))
    visible = HANDOFF.sub("", reply).strip()
    return visible, handoffs


def _skills_text(workdir: str) -> str:
    """The instructions of every skill installed in the agent's workspace
    (``.agents/skills/<name>/SKILL.md``, placed and checksum-verified by the control plane)."""
    root = os.path.join(workdir, ".agents", "skills")
    try:
        names = sorted(os.listdir(root))
    except (FileNotFoundError, NotADirectoryError):
        return ""
    parts = []
    for name in names:
        text = _read(os.path.join(root, name, "SKILL.md"))
        if text:
            parts.append(f"\n\n## Skill: {name}\n\n{text}")
    return "".join(parts)


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip() or None
    except (FileNotFoundError, IsADirectoryError, UnicodeDecodeError):
        return None
