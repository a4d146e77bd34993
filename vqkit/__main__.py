"""``python -m vqkit COMMAND ...`` = ``vqkit COMMAND ...``."""

import sys

from vqkit.commands import main

sys.exit(main())
