#!/usr/bin/env python3
"""``python -m pytest_moeperf plan PLAN OUT`` (pytest_moeperf/parallel/plan.py), runnable from a checkout
where the package is not installed: ``setsid nohup python3 tools/gpu_plan.py PLAN OUT &``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pytest_moeperf.parallel.plan import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
