-- profiles (payments.domain.profiles): one item per customer from customer events and payments.
--
-- Registration fields: last writer wins per field by (occurred_at, event_id), ids compared as
-- strings. registered_at: the earliest registration. Activity, from each distinct payment for
-- both its parties: count and volume per currency as payer and as payee, first and last
-- payment time, and the `counterparties` most recent distinct counterparties ranked by
-- (latest payment time, id), with `counterparties_truncated` saying whether there were more.
-- An attribute with nothing to say is absent (NULL here), as in the item.
CREATE TABLE batch_profiles AS
WITH field_values AS (
    SELECT customer_id, 'name' AS field, name AS value, occurred_us, event_id
    FROM customer_events WHERE name IS NOT NULL
    UNION ALL
    SELECT customer_id, 'email', email, occurred_us, event_id
    FROM customer_events WHERE email IS NOT NULL
    UNION ALL
    SELECT customer_id, 'country', country, occurred_us, event_id
    FROM customer_events WHERE country IS NOT NULL
    UNION ALL
    SELECT customer_id, 'tier', tier, occurred_us, event_id
    FROM customer_events WHERE tier IS NOT NULL
),
latest AS (
    SELECT customer_id, field, value
    FROM (
        SELECT
            f.*,
            row_number() OVER (
                PARTITION BY customer_id, field ORDER BY occurred_us DESC, event_id DESC
            ) AS rank
        FROM field_values AS f
    ) AS ranked
    WHERE rank = 1
),
fields AS (
    SELECT
        customer_id,
        MAX(CASE WHEN field = 'name' THEN value END) AS name,
        MAX(CASE WHEN field = 'email' THEN value END) AS email,
        MAX(CASE WHEN field = 'country' THEN value END) AS country,
        MAX(CASE WHEN field = 'tier' THEN value END) AS tier
    FROM latest
    GROUP BY customer_id
),
registrations AS (
    SELECT customer_id, MIN(occurred_us) AS registered_us
    FROM customer_events
    WHERE event_type = 'customer.registered'
    GROUP BY customer_id
),
sides AS (
    SELECT payer AS customer_id, 'as_payer' AS side, payee AS counterparty, currency,
           amount_minor, occurred_us
    FROM profile_payments
    UNION ALL
    SELECT payee AS customer_id, 'as_payee' AS side, payer AS counterparty, currency,
           amount_minor, occurred_us
    FROM profile_payments
),
flows AS (
    SELECT customer_id, side, currency, COUNT(*) AS payments,
           SUM(CAST(amount_minor AS HUGEINT)) AS volume_minor
    FROM sides
    GROUP BY customer_id, side, currency
),
payer_flows AS (
    SELECT customer_id, json_group_object(
        currency, json_object('count', payments, 'volume_minor', volume_minor)
    ) AS as_payer
    FROM flows
    WHERE side = 'as_payer'
    GROUP BY customer_id
),
payee_flows AS (
    SELECT customer_id, json_group_object(
        currency, json_object('count', payments, 'volume_minor', volume_minor)
    ) AS as_payee
    FROM flows
    WHERE side = 'as_payee'
    GROUP BY customer_id
),
seen AS (
    SELECT customer_id, MIN(occurred_us) AS first_us, MAX(occurred_us) AS last_us
    FROM sides
    GROUP BY customer_id
),
parties AS (
    SELECT customer_id, counterparty, MAX(occurred_us) AS latest_us
    FROM sides
    GROUP BY customer_id, counterparty
),
ranked_parties AS (
    SELECT
        p.*,
        row_number() OVER (
            PARTITION BY customer_id ORDER BY latest_us DESC, counterparty DESC
        ) AS rank,
        COUNT(*) OVER (PARTITION BY customer_id) AS distinct_parties
    FROM parties AS p
),
party_maps AS (
    SELECT
        r.customer_id,
        json_group_object(r.counterparty, r.latest_us) AS counterparties,
        MAX(r.distinct_parties) > MAX(a.counterparties) AS truncated
    FROM ranked_parties AS r
    CROSS JOIN audit_params AS a
    WHERE r.rank <= a.counterparties
    GROUP BY r.customer_id
),
customers AS (
    SELECT customer_id FROM fields
    UNION
    SELECT customer_id FROM registrations
    UNION
    SELECT customer_id FROM seen
)
SELECT
    c.customer_id,
    json_object(
        'customer_id', c.customer_id,
        'name', f.name,
        'email', f.email,
        'country', f.country,
        'tier', f.tier,
        'registered_at', time_text(r.registered_us),
        'as_payer', out_flows.as_payer,
        'as_payee', in_flows.as_payee,
        'first_seen_at', time_text(s.first_us),
        'last_seen_at', time_text(s.last_us),
        'counterparties', p.counterparties,
        'counterparties_truncated', p.truncated
    ) AS item
FROM customers AS c
LEFT JOIN fields AS f ON f.customer_id = c.customer_id
LEFT JOIN registrations AS r ON r.customer_id = c.customer_id
LEFT JOIN payer_flows AS out_flows ON out_flows.customer_id = c.customer_id
LEFT JOIN payee_flows AS in_flows ON in_flows.customer_id = c.customer_id
LEFT JOIN seen AS s ON s.customer_id = c.customer_id
LEFT JOIN party_maps AS p ON p.customer_id = c.customer_id;
