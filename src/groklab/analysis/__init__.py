"""Analysis of runs over training: Li2 measures (features, purity, E, G_F), the stage detector,
Nanda's progress measures and phases, and the replay that computes them for a finished run folder.
Imports: train, models, tasks, theory, errors, science."""

from groklab.analysis.replay import (
                                     ANALYSIS_FILE,
                                     DEFAULT_EVERY,
                                     AnalyzedRun,
                                     Analyzer,
                                     Probe,
                                     analyze_run,
                                     load_analysis,
                                     measure,
                                     resolve_every,
                                     run_with_analysis,
)

__all__ = ["ANALYSIS_FILE", "DEFAULT_EVERY", "Probe", "Analyzer", "AnalyzedRun", "measure", "resolve_every",
           "analyze_run", "run_with_analysis", "load_analysis"]
