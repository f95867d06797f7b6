"""The experiment tool: distilled / baseline sets x students x budgets x seeds, trained through BasicSR, and its
report (which reads the result files only)."""
