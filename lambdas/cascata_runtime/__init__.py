"""Shared runtime of cascata's Lambda functions: decoding, batching, emitting, views, quarantine.

Nothing here knows about payments; the processors in `payments` build on it. It depends only on
the standard library, boto3 (in adapters) and Powertools (in handlers), all present in Lambda.
"""
