"""Data: sources, formats, the KIT-19 registry, one mixture engine, tokenize-and-label, packing, cache."""
