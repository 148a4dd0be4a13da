"""The baseline: raw payments to balances the way the Powertools documentation does it.

It is a comparison, not product code: one function consuming `payments-raw` with Powertools
BatchProcessor (per-record parsing with the parser's Kinesis model), the same schema rules
(cascata's own domain functions, so both sides accept and refuse exactly the same events), the
Idempotency utility on DynamoDB keyed by the producer's `event_id`, and one UpdateItem per
balance change.
"""
