"""``python -m vqkit.train`` = ``vqkit-train`` (what torchrun, accelerate launch and deepspeed start)."""

import sys

from vqkit.commands.common import run_main
from vqkit.commands.train import main

sys.exit(run_main(main, None, "vqkit-train"))
