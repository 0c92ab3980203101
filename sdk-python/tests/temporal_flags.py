"""State shared between the sandboxed test workflows and the test (passed through the sandbox:
the sandbox would otherwise give each workflow run a fresh copy)."""

from __future__ import annotations

# Workflow ids whose first workflow task has already raised (see `FlakyTaskWorkflow`).
failed_first_task: set[str] = set()
