"""Reward-model training entry point.

    python train/rm.py CONFIG.yaml [--key=value ...]
    accelerate launch train/rm.py CONFIG.yaml [--key=value ...]
    deepspeed train/rm.py CONFIG.yaml --deepspeed deepspeed/zero2.json

The sections live in kotune/stages/rm.py, so that `kotune rm` runs the very same code.
"""

import sys

from kotune.stages.rm import main
from kotune.errors import user_errors_exit

if __name__ == "__main__":
    with user_errors_exit():
        sys.exit(main(sys.argv[1:]))
