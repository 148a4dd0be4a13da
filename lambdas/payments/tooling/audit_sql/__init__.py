"""The SQL of the batch audit (`payments.tooling.audit`), run in file-name order on DuckDB.

Package data rather than strings in Python, so the text can be read, reviewed and ported to
Athena on its own: CTEs, window functions, joins, no user-defined functions. What is DuckDB's
own, with its Athena (Trino) spelling:

- the macros of `00_macros.sql`: text substitution, inlined on Athena;
- `json_type` / `json_extract_string` / `json_valid`: `json_extract` / `json_extract_scalar` /
  `try(json_parse(..))`, with the JSON type read from `typeof` of a cast;
- `json_object` / `json_group_object` (the item built as JSON): `CAST(MAP(..) AS JSON)` and
  `map_agg`;
- HUGEINT (128-bit money sums and products): `DECIMAL(38, 0)`; `//` (integer division):
  `/` on integers;
- `UNNEST(generate_series(a, b))`: `CROSS JOIN UNNEST(sequence(a, b))`;
- `sha1(from_hex(..) || encode(..))`: `to_hex(sha1(from_hex(..) || to_utf8(..)))`, lower-cased;
- `try_strptime` / `epoch_us` / `make_timestamp` / `strftime`: `try(date_parse(..))`,
  `to_unixtime`, `from_unixtime`, `format_datetime`.
"""
