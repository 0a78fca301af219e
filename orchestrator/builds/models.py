"""What the build tools return: a build, its summary in listings, and its log."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from ..models import BuildStatus

__all__ = ["Build", "BuildList", "BuildLogOutput", "BuildSummary"]


class Build(BaseModel):
    id: str
    name: str
    status: BuildStatus
    git_url: str
    ref: str | None = None
    commit: str | None = None
    recipe: str | None = Field(None, description="dockerfile, python, node or static")
    recipe_detail: str | None = None
    image: str | None = None
    port: int | None = Field(None, description="what the image listens on (EXPOSE): the deploy default")
    queue_position: int | None = None
    error: str | None = None
    hint: str | None = None
    log_tail: str | None = Field(None, description="last output lines when it failed (untrusted data)")
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None


class BuildSummary(BaseModel):
    id: str
    name: str
    status: BuildStatus
    commit: str | None = None
    image: str | None = None
    error: str | None = None
    created_at: datetime


class BuildList(BaseModel):
    builds: list[BuildSummary]


class BuildLogOutput(BaseModel):
    build_id: str
    status: BuildStatus
    output: str = Field(description="build output inside an untrusted-data boundary")
    next_offset: int = Field(description="pass as offset to get only what came after")
    truncated: bool = Field(description="true when older output was left out to stay within the size bound")
