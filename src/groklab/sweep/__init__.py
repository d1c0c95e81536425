"""Sweeps: YAML specs of many runs, planned into ensemble jobs, executed resumably (local processes
or Ray), stored in a sweep folder, and the scaling fits over it. Imports: analysis, train, models,
tasks, theory, errors, science.

Python: `run_sweep(spec, out)` -> `SweepResult` (index as a table, fit.json as a dict);
`run_refine(spec, out)` for a spec with a `refine:` section (n* per group to a tolerance).
"""

from groklab.sweep.execute import load_results, run_sweep, sweep_status
from groklab.sweep.refine import run_refine
from groklab.sweep.spec import BATCH_FIELDS, Member, PlannedJob, Spec, SweepResult, load_spec, member_id, plan_jobs

__all__ = ["Spec", "Member", "PlannedJob", "load_spec", "plan_jobs", "member_id", "run_sweep", "sweep_status",
           "load_results", "SweepResult", "BATCH_FIELDS", "run_refine"]
