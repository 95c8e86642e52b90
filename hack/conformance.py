#!/usr/bin/env python3
"""`make conformance`: run the Gateway API conformance suite (devcluster/conformance/)."""

import sys
from pathlib import Path

# devcluster is not installed: it is found at the repository root
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devcluster.conformance.main import main

sys.exit(main())
