"""GRPO training entry point.

    python train/grpo.py CONFIG.yaml [--key=value ...]
    accelerate launch train/grpo.py CONFIG.yaml [--key=value ...]
    deepspeed train/grpo.py CONFIG.yaml --deepspeed deepspeed/zero2.json

The sections live in kotune/stages/grpo.py, so that `kotune grpo` runs the very same code.
"""

import sys

from kotune.stages.grpo import main
from kotune.errors import user_errors_exit

if __name__ == "__main__":
    with user_errors_exit():
        sys.exit(main(sys.argv[1:]))
