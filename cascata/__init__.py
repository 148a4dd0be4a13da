"""cascata: serverless stream processing on AWS, declared once and run on AWS or locally.

The local tooling runs the very code that Lambda runs, so the Lambda asset folder (`lambdas/`)
is put on the import path here, once, for every cascata command.
"""

import sys
from pathlib import Path

__version__ = "0.1.0"

LAMBDAS_DIR = Path(__file__).resolve().parent.parent / "lambdas"
if str(LAMBDAS_DIR) not in sys.path:
    sys.path.insert(0, str(LAMBDAS_DIR))
