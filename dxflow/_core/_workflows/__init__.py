"""Workflows: Compose projects run in-process on the Docker SDK."""

from ._service import WorkflowService

__all__ = ["WorkflowService"]
