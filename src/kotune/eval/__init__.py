"""Evaluation through lm-eval-harness (`kotune eval`); the Python API is `kotune.eval.run.evaluate_run`."""
