"""Training stages (sft, dpo, ...) and the registry every tool reads them from (`kotune.stages.registry`)."""
