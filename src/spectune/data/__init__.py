"""spectune's data layer: one Record format, a task registry, embedded (offline) and real (hub/local) sources.

Entry point: :func:`spectune.data.tasks.load_task`. Heavy libraries (``datasets``) are imported only when data
is actually loaded.
"""

from spectune.data.records import Record
from spectune.data.tasks import TASKS, TaskSpec, TaskSplits, get_task, load_task, write_indices

__all__ = ["Record", "TASKS", "TaskSpec", "TaskSplits", "get_task", "load_task", "write_indices"]
