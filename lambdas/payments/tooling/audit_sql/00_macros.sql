-- Expressions the views share. DuckDB macros are text substitution: on Athena each becomes the
-- expression it names.

-- Integer division and remainder rounding towards minus infinity, as Python's // and %.
-- (DuckDB's // truncates towards zero, which differs for instants before 1970.)
CREATE MACRO floor_mod(a, b) AS (((a % b) + b) % b);
CREATE MACRO floor_div(a, b) AS ((a - floor_mod(a, b)) // b);

-- Python's str.isspace() characters: what `\s` in the validators' regular expressions and
-- `str.strip()` mean. RE2's `\s` and DuckDB's trim() know only a few of them.
CREATE MACRO py_whitespace() AS (
    chr(9) || chr(10) || chr(11) || chr(12) || chr(13) || chr(28) || chr(29) || chr(30)
    || chr(31) || chr(32) || chr(133) || chr(160) || chr(5760) || chr(8192) || chr(8193)
    || chr(8194) || chr(8195) || chr(8196) || chr(8197) || chr(8198) || chr(8199) || chr(8200)
    || chr(8201) || chr(8202) || chr(8232) || chr(8233) || chr(8239) || chr(8287) || chr(12288)
);

-- Python's str.upper() where it matters: a currency or a country is valid when the upper-cased
-- text is an ISO code, all ASCII. DuckDB's upper() agrees with Python on every character whose
-- upper case is ASCII except the eight that expand to two or three letters (Python maps
-- U+00DF to 'SS' and the Latin ligatures U+FB00-U+FB06 to 'FF', 'FI', ...): those first.
CREATE MACRO py_upper(s) AS upper(
    replace(replace(replace(replace(replace(replace(replace(replace(s,
        chr(223), 'SS'), chr(64256), 'FF'), chr(64257), 'FI'), chr(64258), 'FL'),
        chr(64259), 'FFI'), chr(64260), 'FFL'), chr(64261), 'ST'), chr(64262), 'ST')
);

-- A JSON number Python reads as an int: yyjson gives integers up to 2**64 - 1 as BIGINT or
-- UBIGINT and larger ones as DOUBLE, whose text is still all digits.
CREATE MACRO json_is_int(kind, text) AS (
    kind IN ('UBIGINT', 'BIGINT')
    OR (kind = 'DOUBLE' AND regexp_matches(text, '^-?[0-9]+$'))
);
-- Its value when it fits 128 bits; NULL otherwise (which is out of every range checked).
CREATE MACRO json_int(kind, text) AS (
    CASE WHEN kind IN ('UBIGINT', 'BIGINT') THEN TRY_CAST(text AS HUGEINT) END
);

-- `parse_time` of cascata_runtime.envelope: RFC 3339 in UTC ('Z' or '+00:00'), up to nine
-- fractional digits of which the first six are kept (truncated, never rounded); NULL when
-- not an instant. Python's `$` also matches before a final newline, hence the `\n?`.
CREATE MACRO rfc3339_us(text) AS (
    CASE WHEN regexp_matches(text,
            '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|\+00:00)\n?$')
        THEN epoch_us(try_strptime(substr(text, 1, 19), '%Y-%m-%dT%H:%M:%S'))
            + COALESCE(TRY_CAST(
                rpad(substr(regexp_extract(text, '^.{19}\.([0-9]+)', 1), 1, 6), 6, '0')
                AS BIGINT), 0)
    END
);

-- Instants (epoch microseconds) as the pipeline writes them.
CREATE MACRO utc_seconds(us) AS strftime(make_timestamp(floor_div(us, 1000000) * 1000000),
                                         '%Y-%m-%dT%H:%M:%S');
CREATE MACRO millis_part(us) AS lpad(CAST(floor_mod(us, 1000000) // 1000 AS VARCHAR), 3, '0');
-- envelope.format_time: milliseconds only when the instant has a fraction.
CREATE MACRO format_time(us) AS (
    utc_seconds(us) || CASE WHEN floor_mod(us, 1000000) = 0 THEN 'Z'
                            ELSE '.' || millis_part(us) || 'Z' END
);
-- fraud.sortable_time: always three fractional digits.
CREATE MACRO sortable_time(us) AS (utc_seconds(us) || '.' || millis_part(us) || 'Z');
-- profiles.time_text: 0, 3 or 6 fractional digits, whichever is exact.
CREATE MACRO time_text(us) AS (
    utc_seconds(us) || CASE
        WHEN floor_mod(us, 1000000) = 0 THEN 'Z'
        WHEN floor_mod(us, 1000) = 0 THEN '.' || millis_part(us) || 'Z'
        ELSE '.' || lpad(CAST(floor_mod(us, 1000000) AS VARCHAR), 6, '0') || 'Z'
    END
);

-- uuid.uuid5 from the hex SHA-1 of namespace || name: version nibble 5, RFC 4122 variant.
CREATE MACRO uuid5_of_sha1(h) AS (
    substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-5' || substr(h, 14, 3) || '-'
    || substr('89ab89ab89ab89ab', position(substr(h, 17, 1) IN '0123456789abcdef'), 1)
    || substr(h, 18, 3) || '-' || substr(h, 21, 12)
);
