"""A tiny JSON-schema-like validator whose messages name the field path."""

from __future__ import annotations

import re
from typing import Any

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}

ID_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"


def validate(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Return 'path: problem' messages (path like agents.coder.model); empty when valid."""
    return [
        f"{where or '(top level)'}: {problem}" for where, problem in _validate(value, schema, path)
    ]


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _validate(value: Any, schema: dict[str, Any], path: str) -> list[tuple[str, str]]:
    types = schema.get("type")
    if types is not None:
        names = types if isinstance(types, list) else [types]
        if not _is_type(value, names):
            return [(path, f"must be {' or '.join(names)}")]
    errors: list[tuple[str, str]] = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append((path, f"must be one of {', '.join(map(str, schema['enum']))}"))
    if isinstance(value, str):
        errors += _check_string(value, schema, path)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append((path, f"must be >= {schema['minimum']}"))
    if isinstance(value, dict):
        errors += _check_object(value, schema, path)
    if isinstance(value, list):
        errors += _check_array(value, schema, path)
    return errors


def _is_type(value: Any, names: list[str]) -> bool:
    for name in names:
        # bool is an int subclass in Python but never a number in JSON.
        if name in ("integer", "number") and isinstance(value, bool):
            continue
        if name == "null" and value is None:
            return True
        if isinstance(value, _TYPES.get(name, ())):
            return True
    return False


def _check_string(value: str, schema: dict[str, Any], path: str) -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    if schema.get("min_length") and len(value) < schema["min_length"]:
        errors.append((path, "must not be empty"))
    if "pattern" in schema and not re.match(schema["pattern"], value):
        errors.append((path, schema.get("pattern_hint", "has an invalid format")))
    return errors


def _check_object(value: dict, schema: dict[str, Any], path: str) -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    for key in schema.get("required", []):
        if key not in value or value[key] is None:
            errors.append((_join(path, key), "required"))
    props = schema.get("properties", {})
    for key, item in value.items():
        if key in props:
            if item is not None:
                errors += _validate(item, props[key], _join(path, key))
        elif "values" in schema:
            if "key_pattern" in schema and not re.match(schema["key_pattern"], key):
                errors.append((_join(path, key), "id must be lowercase letters, digits, - or _"))
            errors += _validate(item, schema["values"], _join(path, key))
    if schema.get("min_properties") and len(value) < schema["min_properties"]:
        errors.append((path, "must not be empty"))
    return errors


def _check_array(value: list, schema: dict[str, Any], path: str) -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    if "items" in schema:
        for index, item in enumerate(value):
            errors += _validate(item, schema["items"], f"{path}[{index}]")
    if schema.get("min_items") and len(value) < schema["min_items"]:
        errors.append((path, "must not be empty"))
    return errors


_HEARTBEAT = {
    "type": "object",
    "properties": {
        "enabled": {"type": "boolean"},
        "interval": {"type": "integer", "minimum": 1},
    },
}

_AGENT = {
    "type": "object",
    "required": ["name", "model"],
    "properties": {
        "name": {"type": "string", "min_length": 1},
        "provider": {
            "type": "string",
            "pattern": r"^(openai|custom:[a-z0-9][a-z0-9_-]*)$",
            "pattern_hint": "must be 'openai' or 'custom:<id>'",
        },
        "model": {"type": "string", "min_length": 1},
        "working_directory": {"type": "string"},
        "system_prompt": {"type": "string"},
        "prompt_file": {"type": "string"},
        "heartbeat": _HEARTBEAT,
    },
}

SETTINGS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["agents"],
    "properties": {
        "workspace": {
            "type": "object",
            "properties": {"path": {"type": "string"}, "name": {"type": "string"}},
        },
        "channels": {
            "type": "object",
            "properties": {
                "enabled": {"type": "array", "items": {"type": "string"}},
                "telegram": {"type": "object", "properties": {"bot_token": {"type": "string"}}},
            },
        },
        "models": {"type": "object"},
        "agents": {
            "type": "object",
            "min_properties": 1,
            "key_pattern": ID_PATTERN,
            "values": _AGENT,
        },
        "custom_providers": {
            "type": "object",
            "key_pattern": ID_PATTERN,
            "values": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "harness": {"type": "string"},
                    "base_url": {"type": "string"},
                    "model": {"type": "string"},
                },
            },
        },
        "teams": {
            "type": "object",
            "key_pattern": ID_PATTERN,
            "values": {
                "type": "object",
                "required": ["agents", "leader_agent"],
                "properties": {
                    "name": {"type": "string"},
                    "agents": {"type": "array", "min_items": 1, "items": {"type": "string"}},
                    "leader_agent": {"type": "string"},
                },
            },
        },
        "monitoring": {
            "type": "object",
            "properties": {"heartbeat_interval": {"type": "integer", "minimum": 1}},
        },
        "policy": {
            "type": "object",
            "properties": {
                "max_chain_depth": {"type": "integer", "minimum": 0},
                "max_messages_per_conversation_per_hour": {"type": "integer", "minimum": 1},
                "max_message_chars": {"type": "integer", "minimum": 1},
            },
        },
        "default_agent": {"type": "string"},
    },
}

PAIRING_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        # private: only approved senders (strangers get a pairing code); public: anyone.
        "access": {"type": "string", "enum": ["private", "public"]},
        "approved": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["sender_id"],
                "properties": {
                    "sender_id": {
                        "type": ["string", "integer"],
                        "pattern": r"^(?:(?:discord|whatsapp):)?-?[0-9]{1,20}$",
                    },
                    "name": {"type": ["string", "null"]},
                },
            },
        },
        "pending": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["sender_id", "code"],
                "properties": {
                    "sender_id": {"type": ["string", "integer"]},
                    "code": {"type": "string"},
                },
            },
        },
    },
}
