"""`python -m kotune.stages [NAME]`: the registered stage names (one per line), or NAME's entry script (launch.sh
reads both)."""

import sys

from kotune.stages.registry import STAGES

if __name__ == "__main__":
    args = sys.argv[1:]
    if not args:
        print("\n".join(STAGES))
    elif args[0] in STAGES:
        print(STAGES[args[0]].entry_script)
    else:
        print(f"unknown stage '{args[0]}': choose one of {', '.join(STAGES)}", file=sys.stderr)
        sys.exit(2)
