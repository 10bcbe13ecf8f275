"""Temporal wiring: task queues, search attributes, the codec and the client factory."""

from __future__ import annotations

import base64
import dataclasses

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.runtime import Runtime

from core.settings import Settings
from core.temporal.codec import EncryptionCodec, load_or_create_key
from core.temporal.queues import ROLES, TaskQueues

__all__ = ["ROLES", "TaskQueues", "codec_key", "connect", "data_converter"]


def codec_key(settings: Settings) -> bytes:
    """The payload codec key: from settings, else (development) a key file under data_dir."""
    if settings.codec_key is not None:
        return base64.b64decode(settings.codec_key.get_secret_value())
    return load_or_create_key(settings.data_dir / "codec.key", create=settings.is_development)


def data_converter(settings: Settings) -> DataConverter:
    """The pydantic data converter with the AES-GCM payload codec."""
    return dataclasses.replace(
        pydantic_data_converter, payload_codec=EncryptionCodec(codec_key(settings))
    )


async def connect(
    settings: Settings, *, target: str | None = None, runtime: Runtime | None = None
) -> Client:
    """A Temporal client for the configured namespace, encrypting every payload."""
    return await Client.connect(
        target or settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(settings),
        runtime=runtime,
    )
