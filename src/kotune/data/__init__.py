"""Data: sources, mixture, tokenization with answer-only labels."""
