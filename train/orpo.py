"""ORPO training entry point.

    python train/orpo.py CONFIG.yaml [--key=value ...]
    accelerate launch train/orpo.py CONFIG.yaml [--key=value ...]
    deepspeed train/orpo.py CONFIG.yaml --deepspeed deepspeed/zero2.json

The sections live in kotune/stages/orpo.py, so that `kotune orpo` runs the very same code.
"""

import sys

from kotune.stages.orpo import main
from kotune.errors import user_errors_exit

if __name__ == "__main__":
    with user_errors_exit():
        sys.exit(main(sys.argv[1:]))
