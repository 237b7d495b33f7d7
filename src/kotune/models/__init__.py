"""Bases: the architecture registry, loading (tokenizer, weights), quantization and LoRA."""
