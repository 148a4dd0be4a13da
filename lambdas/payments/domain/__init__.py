"""Pure payments domain: schemas, double entry, balances. No boto3, no environment."""
