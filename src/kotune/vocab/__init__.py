"""Korean vocabulary extension (EEVE-style): new tokens, their embedding rows, and staged training."""
