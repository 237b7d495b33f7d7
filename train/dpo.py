"""Preference (DPO) training entry point.

    python train/dpo.py CONFIG.yaml [--key=value ...]
    accelerate launch train/dpo.py CONFIG.yaml [--key=value ...]
    deepspeed train/dpo.py CONFIG.yaml --deepspeed deepspeed/zero2.json

The sections live in kotune/stages/dpo.py, so that `kotune dpo` runs the very same code.
"""

import sys

from kotune.stages.dpo import main
from kotune.errors import user_errors_exit

if __name__ == "__main__":
    with user_errors_exit():
        sys.exit(main(sys.argv[1:]))
