-- Validation of every archived record, mirroring what the stream pipeline does with it:
-- cascata_runtime.envelope (decode_json, parse_envelope), payments.domain.schemas (parse_event,
-- sort_by_type), validate on payments-raw (payment.made only) and profiles on customers
-- (customer.registered, customer.updated and payment.made: profiles reads by type).
--
-- `reject_code` is the code the pipeline quarantines the record with, NULL when accepted;
-- checks run in the validators' order, so the first failing one gives the code. A record under
-- errors/ (not UTF-8, not JSON, no valid occurred_at) keeps the archive's code, which names the
-- first problem in the archive's order of checks. Python's
-- regular expressions are mirrored with their quirks: `$` also matches before one final
-- newline (hence `\n?$`), and `\s` is every Unicode space (spelled out; RE2's `\s` is ASCII).
-- Known limits, stated in cascata.audit: duplicate keys in one JSON object (Python keeps the
-- last, DuckDB reads the first). What the input policy refuses (cascata_runtime.policy: too deep,
-- a lone surrogate escape, NaN) the archive files under errors/ with the policy's code.
CREATE TABLE checked AS
WITH docs AS (
    SELECT
        l.*,
        CASE WHEN kind = 'events' AND json_valid(data) THEN CAST(data AS JSON) END AS doc
    FROM lines AS l
),
raw AS (
    SELECT
        d.*,
        json_type(doc, '$.event_id') AS event_id_kind,
        json_extract_string(doc, '$.event_id') AS event_id_text,
        json_type(doc, '$.type') AS type_kind,
        json_extract_string(doc, '$.type') AS type_text,
        json_type(doc, '$.version') AS version_kind,
        CAST(json_extract(doc, '$.version') AS VARCHAR) AS version_text,
        json_type(doc, '$.key') AS key_kind,
        json_extract_string(doc, '$.key') AS key_text,
        json_type(doc, '$.occurred_at') AS occurred_kind,
        json_extract_string(doc, '$.occurred_at') AS occurred_text,
        json_type(doc, '$.data') AS data_kind,
        json_type(doc, '$.correlation_id') AS correlation_kind,
        json_extract_string(doc, '$.correlation_id') AS correlation_text,
        json_type(doc, '$.data.payer') AS payer_kind,
        json_extract_string(doc, '$.data.payer') AS payer_text,
        json_type(doc, '$.data.payee') AS payee_kind,
        json_extract_string(doc, '$.data.payee') AS payee_text,
        json_type(doc, '$.data.amount_minor') AS amount_kind,
        CAST(json_extract(doc, '$.data.amount_minor') AS VARCHAR) AS amount_text,
        json_type(doc, '$.data.currency') AS currency_kind,
        json_extract_string(doc, '$.data.currency') AS currency_text,
        json_type(doc, '$.data.channel') AS channel_kind,
        json_extract_string(doc, '$.data.channel') AS channel_text,
        json_type(doc, '$.data.customer_id') AS customer_kind,
        json_extract_string(doc, '$.data.customer_id') AS customer_text,
        json_type(doc, '$.data.name') AS name_kind,
        json_extract_string(doc, '$.data.name') AS name_text,
        json_type(doc, '$.data.email') AS email_kind,
        json_extract_string(doc, '$.data.email') AS email_text,
        json_type(doc, '$.data.country') AS country_kind,
        json_extract_string(doc, '$.data.country') AS country_text,
        json_type(doc, '$.data.tier') AS tier_kind,
        json_extract_string(doc, '$.data.tier') AS tier_text
    FROM docs AS d
),
typed AS (
    SELECT
        r.*,
        json_int(version_kind, version_text) AS version,
        json_is_int(amount_kind, amount_text) AS amount_is_int,
        json_int(amount_kind, amount_text) AS amount,
        CASE WHEN occurred_kind = 'VARCHAR' THEN rfc3339_us(occurred_text) END AS occurred_us,
        CASE WHEN currency_kind = 'VARCHAR' THEN py_upper(currency_text) END AS currency_upper,
        CASE WHEN country_kind = 'VARCHAR' THEN py_upper(country_text) END AS country_upper,
        CASE WHEN name_kind = 'VARCHAR' THEN trim(name_text, py_whitespace()) END AS name_stripped
    FROM raw AS r
),
checks AS (
    SELECT
        t.*,
        COALESCE(event_id_kind = 'VARCHAR' AND regexp_matches(
            event_id_text, '^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}\n?$'), false) AS ok_event_id,
        COALESCE(type_kind = 'VARCHAR' AND length(type_text) <= 64 AND regexp_matches(
            type_text, '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+\n?$'), false) AS ok_type,
        COALESCE(version BETWEEN 1 AND 1000, false) AS ok_version,
        COALESCE(key_kind = 'VARCHAR' AND length(key_text) BETWEEN 1 AND 256, false) AS ok_key,
        occurred_us IS NOT NULL AS ok_occurred,
        COALESCE(data_kind = 'OBJECT', false) AS ok_data,
        correlation_kind IS NULL OR COALESCE(correlation_kind = 'VARCHAR' AND regexp_matches(
            correlation_text, '^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}\n?$'), false)
            AS ok_correlation,
        COALESCE(payer_kind = 'VARCHAR' AND regexp_matches(
            payer_text, '^[A-Za-z0-9._-]{1,64}\n?$'), false) AS ok_payer,
        COALESCE(payee_kind = 'VARCHAR' AND regexp_matches(
            payee_text, '^[A-Za-z0-9._-]{1,64}\n?$'), false) AS ok_payee,
        COALESCE(customer_kind = 'VARCHAR' AND regexp_matches(
            customer_text, '^[A-Za-z0-9._-]{1,64}\n?$'), false) AS ok_customer,
        COALESCE(amount BETWEEN 1 AND 1000000000000, false) AS ok_amount_range,
        COALESCE(currency_upper IN (SELECT code FROM audit_currencies), false) AS ok_currency,
        channel_kind IS NULL OR channel_kind = 'NULL' OR COALESCE(
            channel_kind = 'VARCHAR' AND channel_text IN ('card', 'transfer', 'wallet'), false)
            AS ok_channel,
        COALESCE(length(name_stripped) BETWEEN 1 AND 200, false) AS ok_name,
        COALESCE(email_kind = 'VARCHAR' AND length(email_text) <= 254 AND regexp_matches(
            email_text,
            '^[^@\t\n\x{0B}\f\r\x{1C}-\x{1F} \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}]{1,64}@[^@.\t\n\x{0B}\f\r\x{1C}-\x{1F} \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}]+(\.[^@.\t\n\x{0B}\f\r\x{1C}-\x{1F} \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}]+)+\n?$'
        ), false) AS ok_email,
        COALESCE(country_upper IN (SELECT code FROM audit_countries), false) AS ok_country,
        COALESCE(tier_kind = 'VARCHAR' AND tier_text IN ('basic', 'plus', 'premium'), false)
            AS ok_tier,
        CASE
            WHEN type_text = 'payment.made' AND version = 1 THEN 'payment'
            WHEN type_text = 'customer.registered' AND version = 1 THEN 'registered'
            WHEN type_text = 'customer.updated' AND version = 1 THEN 'updated'
            WHEN type_text IN ('ledger.posting', 'fraud.alert', 'window.closed', 'payment.late')
                AND version = 1 THEN 'other'
            ELSE 'unknown'
        END AS schema_kind
    FROM typed AS t
),
codes AS (
    SELECT
        c.*,
        CASE
            WHEN kind = 'errors' THEN COALESCE(error_code, 'not_an_event')
            WHEN doc IS NULL THEN 'not_json'
            WHEN NOT ok_event_id
                THEN CASE WHEN event_id_kind IS NULL THEN 'missing' ELSE 'invalid_event_id' END
            WHEN NOT ok_type
                THEN CASE WHEN type_kind IS NULL THEN 'missing' ELSE 'invalid_type' END
            WHEN NOT ok_version
                THEN CASE WHEN version_kind IS NULL THEN 'missing' ELSE 'invalid_version' END
            WHEN NOT ok_key THEN CASE WHEN key_kind IS NULL THEN 'missing' ELSE 'invalid_key' END
            WHEN NOT ok_occurred
                THEN CASE WHEN occurred_kind IS NULL THEN 'missing' ELSE 'invalid_time' END
            WHEN NOT ok_data THEN CASE WHEN data_kind IS NULL THEN 'missing' ELSE 'invalid_data' END
            WHEN NOT ok_correlation THEN 'invalid_correlation_id'
        END AS envelope_code,
        CASE
            WHEN payer_kind IS NULL THEN 'missing'
            WHEN NOT ok_payer THEN 'invalid_account'
            WHEN payee_kind IS NULL THEN 'missing'
            WHEN NOT ok_payee THEN 'invalid_account'
            WHEN payer_text = payee_text THEN 'same_party'
            WHEN key_text <> payer_text THEN 'key_mismatch'
            WHEN amount_kind IS NULL THEN 'missing'
            WHEN NOT amount_is_int THEN 'amount_not_integer'
            WHEN NOT ok_amount_range THEN 'amount_out_of_range'
            WHEN currency_kind IS NULL THEN 'missing'
            WHEN NOT ok_currency THEN 'unknown_currency'
            WHEN NOT ok_channel THEN 'invalid_channel'
        END AS payment_code,
        CASE
            WHEN customer_kind IS NULL THEN 'missing'
            WHEN NOT ok_customer THEN 'invalid_account'
            WHEN key_text <> customer_text THEN 'key_mismatch'
            WHEN name_kind IS NULL THEN 'missing'
            WHEN NOT ok_name THEN 'invalid_name'
            WHEN email_kind IS NULL THEN 'missing'
            WHEN NOT ok_email THEN 'invalid_email'
            WHEN country_kind IS NULL THEN 'missing'
            WHEN NOT ok_country THEN 'invalid_country'
            WHEN tier_kind IS NULL THEN 'missing'
            WHEN NOT ok_tier THEN 'invalid_tier'
        END AS registered_code,
        CASE
            WHEN customer_kind IS NULL THEN 'missing'
            WHEN NOT ok_customer THEN 'invalid_account'
            WHEN key_text <> customer_text THEN 'key_mismatch'
            WHEN name_kind IS NOT NULL AND NOT ok_name THEN 'invalid_name'
            WHEN email_kind IS NOT NULL AND NOT ok_email THEN 'invalid_email'
            WHEN country_kind IS NOT NULL AND NOT ok_country THEN 'invalid_country'
            WHEN tier_kind IS NOT NULL AND NOT ok_tier THEN 'invalid_tier'
            WHEN name_kind IS NULL AND email_kind IS NULL AND country_kind IS NULL
                AND tier_kind IS NULL THEN 'no_changes'
        END AS updated_code
    FROM checks AS c
),
decided AS (
    SELECT
        c.*,
        -- The other known types (ledger.posting, ...) belong to neither stream; their own
        -- schema is not mirrored, so one that also fails it gets unexpected_type here where
        -- the pipeline names the field (both quarantine it).
        COALESCE(envelope_code, CASE schema_kind
            WHEN 'payment' THEN CASE source
                WHEN 'payments-raw' THEN payment_code
                WHEN 'customers' THEN payment_code
            END
            WHEN 'registered' THEN CASE source
                WHEN 'payments-raw' THEN COALESCE(registered_code, 'unexpected_type')
                WHEN 'customers' THEN registered_code
            END
            WHEN 'updated' THEN CASE source
                WHEN 'payments-raw' THEN COALESCE(updated_code, 'unexpected_type')
                WHEN 'customers' THEN updated_code
            END
            WHEN 'other' THEN 'unexpected_type'
            ELSE 'unknown_schema'
        END) AS reject_code
    FROM codes AS c
)
SELECT
    source,
    stream,
    shard_id,
    sequence_number,
    sequence_digits,
    subsequence,
    arrival_ms,
    kind,
    reject_code,
    source IS NOT NULL AND reject_code IS NULL AS accepted,
    CASE WHEN ok_event_id THEN event_id_text END AS event_id,
    CASE WHEN ok_type THEN type_text END AS event_type,
    occurred_us,
    key_text AS event_key,
    payer_text AS payer,
    payee_text AS payee,
    CASE WHEN ok_amount_range THEN CAST(amount AS BIGINT) END AS amount_minor,
    currency_upper AS currency,
    customer_text AS customer_id,
    CASE WHEN name_kind = 'VARCHAR' THEN name_stripped END AS name,
    CASE WHEN email_kind = 'VARCHAR' THEN email_text END AS email,
    CASE WHEN country_kind = 'VARCHAR' THEN country_upper END AS country,
    CASE WHEN tier_kind = 'VARCHAR' THEN tier_text END AS tier
FROM decided;
