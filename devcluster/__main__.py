"""`python -m devcluster`: see devcluster/run.py."""

import sys

from devcluster.run import main

sys.exit(main())
