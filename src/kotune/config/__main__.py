"""`python -m kotune.config --write-library-fields`: rebuild library_fields.json from the installed TRL and
transformers (after a version bump, or when a new stage is registered)."""

import sys

from kotune.config.library_schema import write

if __name__ == "__main__":
    if sys.argv[1:] != ["--write-library-fields"]:
        raise SystemExit("usage: python -m kotune.config --write-library-fields")
    print(f"written: {write()}")
