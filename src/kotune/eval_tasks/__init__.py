"""lm-eval task YAMLs that lm-eval 0.4.13 lacks (KLUE STS and YNAT), loaded with TaskManager(include_path=...)."""
