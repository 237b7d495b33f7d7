"""SIMPO training entry point.

    python train/simpo.py CONFIG.yaml [--key=value ...]
    accelerate launch train/simpo.py CONFIG.yaml [--key=value ...]
    deepspeed train/simpo.py CONFIG.yaml --deepspeed deepspeed/zero2.json

The sections live in kotune/stages/simpo.py, so that `kotune simpo` runs the very same code.
"""

import sys

from kotune.stages.simpo import main
from kotune.errors import user_errors_exit

if __name__ == "__main__":
    with user_errors_exit():
        sys.exit(main(sys.argv[1:]))
