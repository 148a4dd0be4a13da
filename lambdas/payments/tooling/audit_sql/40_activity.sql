-- activity-view (payments.domain.windows): what every (account, pane) would hold if every
-- payment were on time. The view keeps one item per account and pane (the smallest advance of
-- the configured windows, 5 minutes by default; a window is the merge of the panes it spans),
-- so each distinct payment counts in exactly one pane for its payer as `out` and one for its
-- payee as `in`, per currency (count, sum, min, max).
--
-- A pane's `totals` hold only the payments that were on time for every window covering it
-- (late ones went to the side output, or, late for some windows only, to `later`), and which
-- were late depends on how the shards' progress interleaved. So these are bounds, not the
-- expected values: a pane item can only hold a subset of its payments (count, sum and max at
-- most these, min at least this).
CREATE TABLE batch_activity AS
WITH pane AS (
    SELECT MIN(advance_s) AS pane_s FROM audit_windows
),
contributions AS (
    SELECT payer AS account_id, 'out' AS direction, currency, amount_minor, occurred_us
    FROM payments
    UNION ALL
    SELECT payee AS account_id, 'in' AS direction, currency, amount_minor, occurred_us
    FROM payments
),
paned AS (
    SELECT
        c.*,
        floor_div(c.occurred_us, pane.pane_s * 1000000) * pane.pane_s AS start_s,
        pane.pane_s AS pane_s
    FROM contributions AS c
    CROSS JOIN pane
),
cells AS (
    SELECT
        account_id,
        'pane#' || utc_seconds(start_s * 1000000) || 'Z' AS window_key,
        start_s,
        start_s + pane_s AS end_s,
        direction,
        currency,
        COUNT(*) AS payments,
        SUM(CAST(amount_minor AS HUGEINT)) AS sum_minor,
        MIN(amount_minor) AS min_minor,
        MAX(amount_minor) AS max_minor
    FROM paned
    GROUP BY account_id, start_s, pane_s, direction, currency
),
directions AS (
    SELECT
        account_id, window_key, start_s, end_s, direction,
        json_group_object(currency, json_object(
            'count', payments, 'sum_minor', sum_minor, 'min_minor', min_minor,
            'max_minor', max_minor
        )) AS per_currency,
        SUM(payments) AS payments
    FROM cells
    GROUP BY account_id, window_key, start_s, end_s, direction
)
SELECT
    account_id,
    window_key,
    json_object(
        'account_id', account_id,
        'window_key', window_key,
        'window', 'pane',
        'window_start', utc_seconds(start_s * 1000000) || 'Z',
        'window_end', utc_seconds(end_s * 1000000) || 'Z',
        'totals', json_group_object(direction, per_currency),
        'payments', SUM(payments)
    ) AS item
FROM directions
GROUP BY account_id, window_key, start_s, end_s;
