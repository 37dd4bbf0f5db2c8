"""Models of what happens to data (re-exported so imports stay ``from workflows.models import X``)."""

from workflows.models.jobs import Job, JobStat, JobStatHistory, Task, TaskDependency
from workflows.models.workflow import Workflow

__all__ = ["Job", "JobStat", "JobStatHistory", "Task", "TaskDependency", "Workflow"]
