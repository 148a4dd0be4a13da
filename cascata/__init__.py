"""cascata: serverless stream processing on AWS, declared once and run on AWS or locally."""

__version__ = "0.1.0"
