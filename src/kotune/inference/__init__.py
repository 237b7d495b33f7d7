"""Using a trained run dir: load it as trained, generate and stream (`chat`), merge it into its base."""
