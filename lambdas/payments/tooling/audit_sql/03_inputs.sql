-- What the views are computed from: the set of distinct valid input events.
--
-- A payment is identified by its event id: any copy (a producer's retry, a re-sent file) is the
-- same fact and counts once. The copy kept is the first to arrive, which is the one the stream
-- pipeline applies; copies are normally identical, and differing copies under one id are a
-- producer's bug the views cannot resolve either.

-- Payments as validate passes them to payments-validated (balances, fraud-detect, windows).
CREATE TABLE payments AS
SELECT
    event_id, payer, payee, amount_minor, currency, occurred_us, arrival_ms, shard_id,
    sequence_digits, sequence_number, subsequence
FROM (
    SELECT
        c.*,
        row_number() OVER (
            PARTITION BY event_id
            ORDER BY arrival_ms, shard_id, sequence_digits, sequence_number, subsequence
        ) AS copy
    FROM checked AS c
    WHERE accepted AND source = 'payments-raw' AND event_type = 'payment.made'
) AS numbered
WHERE copy = 1;

-- Payments as profiles sees them: those of payments-validated and any payment.made that came
-- on the customers stream (profiles reads by type, whatever the stream), counted once by id.
CREATE TABLE profile_payments AS
SELECT event_id, payer, payee, amount_minor, currency, occurred_us
FROM (
    SELECT
        c.*,
        row_number() OVER (
            PARTITION BY event_id
            ORDER BY arrival_ms, shard_id, sequence_digits, sequence_number, subsequence
        ) AS copy
    FROM checked AS c
    WHERE accepted AND event_type = 'payment.made'
) AS numbered
WHERE copy = 1;

-- Valid customer events. Applying one twice changes nothing (last writer wins by event
-- time), so copies need no removal; arrival_ms is kept for fraud-detect's view of the tier.
CREATE TABLE customer_events AS
SELECT
    event_id, event_type, customer_id, name, email, country, tier, occurred_us, arrival_ms
FROM checked
WHERE accepted AND source = 'customers'
    AND event_type IN ('customer.registered', 'customer.updated');
