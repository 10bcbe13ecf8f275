"""Annotated dependency aliases shared by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from core.context import AppContext


def get_context(request: Request) -> AppContext:
    """The process's ``AppContext``, built in the lifespan."""
    ctx: AppContext = request.app.state.ctx
    return ctx


ContextDep = Annotated[AppContext, Depends(get_context)]
