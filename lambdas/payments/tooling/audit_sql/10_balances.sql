-- balances: per account, the sum of its postings per currency (a debit of the payer and a
-- credit of the payee per payment) and how many postings it has. A currency whose postings
-- net to zero stays in the item with 0, as the balances processor leaves it.
CREATE TABLE batch_balances AS
WITH postings AS (
    SELECT payer AS account_id, currency, -CAST(amount_minor AS HUGEINT) AS signed_minor
    FROM payments
    UNION ALL
    SELECT payee AS account_id, currency, CAST(amount_minor AS HUGEINT) AS signed_minor
    FROM payments
),
per_currency AS (
    SELECT account_id, currency, SUM(signed_minor) AS balance_minor, COUNT(*) AS postings
    FROM postings
    GROUP BY account_id, currency
)
SELECT
    account_id,
    json_object(
        'account_id', account_id,
        'balances', json_group_object(currency, balance_minor),
        'postings', SUM(postings)
    ) AS item
FROM per_currency
GROUP BY account_id;
