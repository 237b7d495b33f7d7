"""KTO training entry point.

    python train/kto.py CONFIG.yaml [--key=value ...]
    accelerate launch train/kto.py CONFIG.yaml [--key=value ...]
    deepspeed train/kto.py CONFIG.yaml --deepspeed deepspeed/zero2.json

The sections live in kotune/stages/kto.py, so that `kotune kto` runs the very same code.
"""

import sys

from kotune.stages.kto import main
from kotune.errors import user_errors_exit

if __name__ == "__main__":
    with user_errors_exit():
        sys.exit(main(sys.argv[1:]))
