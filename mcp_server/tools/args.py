"""Argument types shared across tools, so an agent learns each name once."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

__all__ = ["BackupRef", "BuildRef", "Confirm", "DatabaseRef", "SandboxRef", "ServiceRef", "VolumeRef", "Wait"]

ServiceRef = Annotated[str, Field(min_length=1, max_length=64, description="service name or id")]
SandboxRef = Annotated[str, Field(min_length=1, max_length=64, description="sandbox name or id")]
# Short: it is in six tools' schemas. A client that can ask its user (elicitation) is asked instead.
Confirm = Annotated[bool, Field(description="true once the user agreed")]
Wait = Annotated[bool, Field(description="wait (bounded) until it answers; false returns at once")]
BuildRef = Annotated[str, Field(min_length=1, max_length=64, description="build id")]
DatabaseRef = Annotated[str, Field(min_length=1, max_length=64, description="database name or id")]
BackupRef = Annotated[str, Field(min_length=1, max_length=64, description="backup id (bk_...)")]
VolumeRef = Annotated[str, Field(min_length=1, max_length=64, description="volume name")]
