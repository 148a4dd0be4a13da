-- alerts-view (payments.domain.fraud): the three rules over each payer's distinct payments, in
-- the order fraud-detect evaluates them, with the thresholds of `audit_params` / `audit_tiers`
-- / `audit_weights` (the FraudRules of the version audited).
--
-- Order. A payer's payments are evaluated in the order its shard of payments-raw holds them
-- (sequence numbers, and the user records of a KPL aggregate by subsequence: producers key
-- records by the payer, so one shard holds them all); a payer whose payments came on several
-- shards is put in arrival order. fraud-detect sorts the payments of one payer within one
-- batch by event time, so input whose event times go backwards along the shard can give other
-- results, depending on batching.
--
-- Amounts are compared in major units of their currency against limits in reference minor
-- units (fraud.exceeds): amount * 10**REF > limit * weight * 10**exponent, exactly in 128-bit
-- integers.
--
-- velocity: fraud-detect counts the payments it still keeps in its rule state, the payer's
-- earlier payments newer than (its newest event time - interval - lateness), at most
-- velocity_keep of them, the newest by (time, id). Among those, the ones inside
-- (t - interval, t] count. In closed form: with W the earlier payments in
-- (max(t - interval, horizon), t] and A the earlier ones after max(t, horizon), the count is
-- 1 + max(0, min(W, keep - A)). For payments in event-time order A is 0 and this is 1 + W.
--
-- new_payee: the payee is known when the payer paid it before and, since that payment, paid
-- fewer than known_payees_cap other distinct payees (the state's LRU of payees).
--
-- tier: the payer's tier as the profile held it when the payment was evaluated, which is the
-- last writer by event time among the customer events that arrived (strictly) before the
-- payment. A
-- customer event that arrived earlier but was not yet applied to the profile (the profiles
-- processor was behind) shows up as a difference: the stream pipeline really did evaluate the
-- payment against another tier.
CREATE TABLE batch_alerts AS
WITH payer_shards AS (
    SELECT payer, COUNT(DISTINCT shard_id) AS shards FROM payments GROUP BY payer
),
ordered AS (
    SELECT
        p.*,
        floor_div(p.occurred_us, 1000) AS at_ms,
        row_number() OVER (
            PARTITION BY p.payer
            ORDER BY CASE WHEN s.shards = 1 THEN 0 ELSE p.arrival_ms END,
                     p.shard_id, p.sequence_digits, p.sequence_number, p.subsequence
        ) AS position
    FROM payments AS p
    JOIN payer_shards AS s ON s.payer = p.payer
),
positioned AS (
    SELECT
        o.*,
        MAX(at_ms) OVER (
            PARTITION BY payer ORDER BY position
            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
        ) AS newest_before_ms,
        LAG(position) OVER (PARTITION BY payer, payee ORDER BY position) AS previous_to_payee,
        LEAD(position) OVER (PARTITION BY payer, payee ORDER BY position) AS next_to_payee
    FROM ordered AS o
),
evaluated AS (
    SELECT
        p.*,
        COALESCE(SUM(CASE WHEN previous_to_payee IS NULL THEN 1 ELSE 0 END) OVER (
            PARTITION BY payer ORDER BY position
            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
        ), 0) AS payees_before
    FROM positioned AS p
),
bucketed AS (
    -- Only earlier payments in (t - interval, t + interval + lateness) can change the count
    -- (W needs the horizon below t, which puts every newer kept payment below t + retention),
    -- so the self-join is an equi-join on time buckets of that width and the two next to it,
    -- not every pair of a payer's payments.
    SELECT e.*, floor_div(e.at_ms, r.velocity_interval_ms + r.retention_ms) AS time_bucket
    FROM evaluated AS e
    CROSS JOIN audit_params AS r
),
velocity AS (
    SELECT
        p.event_id,
        COUNT(q.event_id) FILTER (WHERE q.at_ms <= p.at_ms) AS inside,
        COUNT(q.event_id) FILTER (WHERE q.at_ms > p.at_ms) AS newer
    FROM bucketed AS p
    CROSS JOIN audit_params AS r
    CROSS JOIN (VALUES (-1), (0), (1)) AS near(step)
    LEFT JOIN bucketed AS q
        ON q.payer = p.payer
        AND q.time_bucket = p.time_bucket + near.step
        AND q.position < p.position
        AND q.at_ms > p.at_ms - r.velocity_interval_ms
        AND q.at_ms < p.at_ms + r.retention_ms
        AND q.at_ms > p.newest_before_ms - r.retention_ms
    GROUP BY p.event_id
),
long_gaps AS (
    -- Only a payee last paid at least known_payees_cap payments ago can have been forgotten.
    SELECT p.event_id, p.payer, p.position, p.previous_to_payee
    FROM evaluated AS p
    CROSS JOIN audit_params AS r
    WHERE p.previous_to_payee IS NOT NULL
        AND p.position - p.previous_to_payee - 1 >= r.known_payees_cap
),
forgotten AS (
    -- Distinct payees paid in between: each counted at its last payment before this one.
    SELECT g.event_id
    FROM long_gaps AS g
    JOIN evaluated AS m
        ON m.payer = g.payer
        AND m.position > g.previous_to_payee
        AND m.position < g.position
        AND (m.next_to_payee IS NULL OR m.next_to_payee >= g.position)
    CROSS JOIN audit_params AS r
    GROUP BY g.event_id, r.known_payees_cap
    HAVING COUNT(*) >= r.known_payees_cap
),
profile_tiers AS (
    SELECT event_id, tier
    FROM (
        SELECT
            p.event_id,
            c.tier,
            row_number() OVER (
                PARTITION BY p.event_id ORDER BY c.occurred_us DESC, c.event_id DESC
            ) AS rank
        FROM payments AS p
        JOIN customer_events AS c
            ON c.customer_id = p.payer AND c.arrival_ms < p.arrival_ms AND c.tier IS NOT NULL
    ) AS ranked
    WHERE rank = 1
),
judged AS (
    SELECT
        p.event_id,
        p.payer,
        p.payee,
        p.amount_minor,
        p.currency,
        p.occurred_us,
        CAST(p.amount_minor AS HUGEINT) * r.reference_unit AS amount_scaled,
        COALESCE(w.weight, 1) * cur.unit AS currency_scale,
        COALESCE(t.tier, r.default_tier) AS tier,
        CASE WHEN t.tier IS NULL THEN 'default' ELSE 'profile' END AS tier_source,
        COALESCE(t.limit_minor, d.limit_minor) AS limit_minor,
        1 + GREATEST(0, LEAST(v.inside, r.velocity_keep - v.newer)) AS velocity_count,
        p.previous_to_payee IS NOT NULL AND f.event_id IS NULL AS payee_known,
        LEAST(p.payees_before, r.known_payees_cap) AS known_payees,
        r.*
    FROM evaluated AS p
    CROSS JOIN audit_params AS r
    JOIN audit_currencies AS cur ON cur.code = p.currency
    JOIN velocity AS v ON v.event_id = p.event_id
    JOIN audit_tiers AS d ON d.tier = r.default_tier
    LEFT JOIN audit_weights AS w ON w.currency = p.currency
    LEFT JOIN (
        SELECT pt.event_id, pt.tier, lim.limit_minor
        FROM profile_tiers AS pt
        JOIN audit_tiers AS lim ON lim.tier = pt.tier
    ) AS t ON t.event_id = p.event_id
    LEFT JOIN forgotten AS f ON f.event_id = p.event_id
),
raised AS (
    SELECT
        j.*,
        'tier_limit' AS rule,
        severity_tier_limit AS severity,
        json_object(
            'payee', payee, 'amount_minor', amount_minor, 'currency', currency,
            'tier', tier, 'tier_source', tier_source,
            'limit_minor', floor_div(limit_minor * currency_scale, reference_unit)
        ) AS evidence
    FROM judged AS j
    WHERE amount_scaled > limit_minor * currency_scale
    UNION ALL
    SELECT
        j.*,
        'velocity' AS rule,
        severity_velocity AS severity,
        json_object(
            'payee', payee, 'amount_minor', amount_minor, 'currency', currency,
            'count', velocity_count, 'max_payments', velocity_max_payments,
            'interval_s', velocity_interval_s
        ) AS evidence
    FROM judged AS j
    WHERE velocity_count > velocity_max_payments
    UNION ALL
    SELECT
        j.*,
        'new_payee' AS rule,
        severity_new_payee AS severity,
        json_object(
            'payee', payee, 'amount_minor', amount_minor, 'currency', currency,
            'threshold_minor',
            floor_div(new_payee_threshold_minor * currency_scale, reference_unit),
            'known_payees', known_payees
        ) AS evidence
    FROM judged AS j
    WHERE NOT payee_known AND amount_scaled > new_payee_threshold_minor * currency_scale
),
identified AS (
    SELECT
        r.*,
        uuid5_of_sha1(sha1(
            from_hex(alert_namespace) || encode(event_id || chr(31) || 'fraud.alert/' || rule)
        )) AS alert_id
    FROM raised AS r
)
SELECT
    payer AS account_id,
    sortable_time(occurred_us) || '#' || alert_id AS alert_key,
    json_object(
        'account_id', payer,
        'alert_key', sortable_time(occurred_us) || '#' || alert_id,
        'day', strftime(make_timestamp(occurred_us), '%Y-%m-%d'),
        'alert_id', alert_id,
        'occurred_at', format_time(occurred_us),
        'rule', rule,
        'severity', severity,
        'payment_event_id', event_id,
        'evidence', evidence,
        'amount_minor', amount_minor,
        'currency', currency
    ) AS item
FROM identified;
