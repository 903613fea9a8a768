import sys

from rolemodels.cli import main

sys.exit(main())
