"""cascata: serverless stream processing on AWS, declared once and run on AWS or locally.

The platform: the declaration API (`cascata.pipeline`), the project setting that names a
pipeline (`cascata.project`), the CDK rendering (`cascata.cdk`), the local runtime
(`cascata.local`), the command line (`cascata.cli`) and the test fixtures
(`cascata.testing`). The Lambda runtime is the `cascata_runtime` package beside it.
"""

__version__ = "0.1.0"
