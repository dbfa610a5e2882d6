"""Marketing analytics beside the models: segments and budgets, repurchase and cohorts, experiments
and uplift, and their reports."""
