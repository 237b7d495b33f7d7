"""CPO training entry point.

    python train/cpo.py CONFIG.yaml [--key=value ...]
    accelerate launch train/cpo.py CONFIG.yaml [--key=value ...]
    deepspeed train/cpo.py CONFIG.yaml --deepspeed deepspeed/zero2.json

The sections live in kotune/stages/cpo.py, so that `kotune cpo` runs the very same code.
"""

import sys

from kotune.stages.cpo import main
from kotune.errors import user_errors_exit

if __name__ == "__main__":
    with user_errors_exit():
        sys.exit(main(sys.argv[1:]))
