-- activity-view (payments.domain.windows): what every (account, window) would hold if every
-- payment were on time: each distinct payment counts in each event-time window [start, end)
-- of each spec that covers it, for its payer as `out` and its payee as `in`, per currency
-- (count, sum, min, max).
--
-- The view itself holds only the payments that were on time; the others went to the late
-- side output, and which ones did depends on how the shards' progress interleaved in
-- processing time. So these are bounds, not the expected values: a window item can only hold
-- a subset of its payments (count, sum and max at most these, min at least this).
CREATE TABLE batch_activity AS
WITH contributions AS (
    SELECT payer AS account_id, 'out' AS direction, currency, amount_minor, occurred_us
    FROM payments
    UNION ALL
    SELECT payee AS account_id, 'in' AS direction, currency, amount_minor, occurred_us
    FROM payments
),
windowed AS (
    SELECT
        c.*,
        w.name AS window_name,
        starts.k * w.advance_s AS start_s,
        starts.k * w.advance_s + w.size_s AS end_s
    FROM contributions AS c
    CROSS JOIN audit_windows AS w,
    UNNEST(generate_series(
        floor_div(c.occurred_us - w.size_s * 1000000, w.advance_s * 1000000) + 1,
        floor_div(c.occurred_us, w.advance_s * 1000000)
    )) AS starts(k)
),
cells AS (
    SELECT
        account_id,
        window_name || '#' || utc_seconds(start_s * 1000000) || 'Z' AS window_key,
        window_name,
        start_s,
        end_s,
        direction,
        currency,
        COUNT(*) AS payments,
        SUM(CAST(amount_minor AS HUGEINT)) AS sum_minor,
        MIN(amount_minor) AS min_minor,
        MAX(amount_minor) AS max_minor
    FROM windowed
    GROUP BY account_id, window_name, start_s, end_s, direction, currency
),
directions AS (
    SELECT
        account_id, window_key, window_name, start_s, end_s, direction,
        json_group_object(currency, json_object(
            'count', payments, 'sum_minor', sum_minor, 'min_minor', min_minor,
            'max_minor', max_minor
        )) AS per_currency,
        SUM(payments) AS payments
    FROM cells
    GROUP BY account_id, window_key, window_name, start_s, end_s, direction
)
SELECT
    account_id,
    window_key,
    json_object(
        'account_id', account_id,
        'window_key', window_key,
        'window', window_name,
        'window_start', utc_seconds(start_s * 1000000) || 'Z',
        'window_end', utc_seconds(end_s * 1000000) || 'Z',
        'totals', json_group_object(direction, per_currency),
        'payments', SUM(payments)
    ) AS item
FROM directions
GROUP BY account_id, window_key, window_name, start_s, end_s;
