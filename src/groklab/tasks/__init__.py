"""Tasks: the M×M tables a network learns (groups, Cayley-table files, modular expressions) and
their seeded train/test splits. Imports: errors, science, theory (irrep degrees for critical sizes).

>>> from groklab.tasks import make_task
>>> make_task("S3").order
6
"""

from groklab.tasks.config import TaskConfig
from groklab.tasks.task import (
                                MAX_ORDER,
                                Task,
                                available_tasks,
                                check_group_axioms,
                                critical_size,
                                make_split,
                                make_task,
                                split_size,
)

__all__ = ["MAX_ORDER", "Task", "TaskConfig", "available_tasks", "check_group_axioms", "critical_size", "make_split",
           "make_task", "split_size"]
