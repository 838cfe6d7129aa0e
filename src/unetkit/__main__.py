import sys

from unetkit.cli import main

sys.exit(main())
