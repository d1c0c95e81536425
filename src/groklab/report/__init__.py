"""Reports: HTML pages (offline Plotly) and PNG figures for runs, sweeps, analyses and comparisons.
Reads run and sweep folders only. Imports: sweep, analysis, train, tasks, theory, errors, science."""

from groklab.report.write import report

__all__ = ["report"]
