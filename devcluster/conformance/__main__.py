"""`python -m devcluster.conformance`: see main.py."""

import sys

from devcluster.conformance.main import main

sys.exit(main())
