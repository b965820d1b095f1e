"""The logger a task writes to."""

from __future__ import annotations

import logging

from prefect import get_run_logger
from prefect.exceptions import MissingContextError


def run_logger() -> logging.Logger | logging.LoggerAdapter:
    """The flow or task run's logger inside Prefect; the tasks' own logger outside it, where a test or a script
    calls a task's plain function (`task.fn`)."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("tasks")
