"""Evaluation: the test loop (EvalModule), one decoder over the eval sets, decoder sweeps, results tables,
and the RL study report."""
