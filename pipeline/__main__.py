import sys

from pipeline.drivers.cli import main

sys.exit(main())
