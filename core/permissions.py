"""The one permission matrix: which organization role may do what.

Roles are ordered (``viewer < member < admin < owner``): each action names the least
role that may do it, and every higher role may too. Every API route and dashboard page
that acts on an organization or one of its bots names exactly one of these actions
(``api/deps.py`` checks it; ``tests/api/test_permission_matrix.py`` walks the routes and
tries every role). The README's role table is generated from ``MATRIX`` by
``markdown_table`` (a test keeps the two equal).
"""

from __future__ import annotations

from typing import Literal

Role = Literal["viewer", "member", "admin", "owner"]
ROLES: tuple[Role, ...] = ("viewer", "member", "admin", "owner")

# action -> (least role, what it covers)
MATRIX: dict[str, tuple[Role, str]] = {
    "bot.read": ("viewer", "see bots, their status, usage, logs, conversations and backups"),
    "bot.operate": (
        "member",
        "pause, resume, restart, test messages, pairing approvals, manual backups",
    ),
    "bot.manage": (
        "admin",
        "create and configure bots: Telegram token, model and keys, bundle, restore",
    ),
    "billing.manage": ("admin", "change plans, checkout and the billing portal"),
    "members.read": ("viewer", "see the organization's members"),
    "members.manage": ("admin", "invite, change roles of and remove members (not owners)"),
    "audit.read": ("admin", "read and export the organization's audit log"),
    "org.manage": ("admin", "rename the organization and set its admin controls"),
    "bot.delete": ("owner", "delete bots"),
    "org.delete": ("owner", "delete the organization, make or remove owners"),
}

Action = str


def rank(role: str) -> int:
    """The role's place in the order (-1 for anything that is not a role)."""
    return ROLES.index(role) if role in ROLES else -1  # type: ignore[arg-type]


def least_role(action: Action) -> Role:
    """The least role allowed to do ``action`` (KeyError for an unknown action)."""
    return MATRIX[action][0]


def can(role: str | None, action: Action) -> bool:
    """Whether ``role`` may do ``action``; ``None`` (no membership) may do nothing."""
    return role is not None and rank(role) >= rank(least_role(action))


def allowed_roles(action: Action) -> tuple[Role, ...]:
    """The roles that may do ``action``, least first."""
    return tuple(r for r in ROLES if can(r, action))


def markdown_table() -> str:
    """The matrix as the README's Markdown table."""
    head = "| action | " + " | ".join(ROLES) + " | covers |"
    rule = "|---|" + "---|" * len(ROLES) + "---|"
    rows = [
        f"| `{action}` | "
        + " | ".join("yes" if can(r, action) else "no" for r in ROLES)
        + f" | {covers} |"
        for action, (_least, covers) in MATRIX.items()
    ]
    return "\n".join([head, rule, *rows])
