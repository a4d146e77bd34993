import sys

from vqkit.cli import main

sys.exit(main())
