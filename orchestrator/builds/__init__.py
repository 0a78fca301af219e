"""Builds from git: the use-cases (manager) and what they return (models), the runner that hosts builds
(runner) and one build's steps (steps), fetching (git, sources), picking a recipe (recipes), logs that
outlive the process (logs), and a build's image pinned to what it made (pins, registry)."""

from .manager import BuildManager, BuildRequest
from .models import Build, BuildList, BuildLogOutput, BuildSummary

__all__ = ["Build", "BuildList", "BuildLogOutput", "BuildManager", "BuildRequest", "BuildSummary"]
