-- One row per stream record. The same record can be archived twice (a retried Firehose or
-- archiver batch; a bisected retry groups records into other objects), and it counts once:
-- its identity is (stream, shard, sequence number, subsequence). The user records of a KPL
-- aggregate share the aggregate's sequence number and each is its own record, told apart by
-- its subsequence number (its index in the aggregate); a line without one (a record not
-- aggregated) is subsequence 0, since a sequence number holds one plain record or one
-- aggregate, never both.
--
-- `source` names the origin stream whatever the writer called it: the local archiver writes the
-- declared name (payments-raw), Firehose's transformation the physical one
-- (cascata-prod-payments-raw).
CREATE TABLE lines AS
SELECT
    CASE
        WHEN stream IN ('payments-raw', 'customers') THEN stream
        WHEN stream LIKE '%-payments-raw' THEN 'payments-raw'
        WHEN stream LIKE '%-customers' THEN 'customers'
    END AS source,
    stream,
    shard_id,
    sequence_number,
    length(sequence_number) AS sequence_digits,
    subsequence,
    partition_key,
    arrival_ms,
    kind,
    data,
    error_code
FROM (
    SELECT
        a.*,
        COALESCE(a.subsequence_number, 0) AS subsequence,
        row_number() OVER (
            PARTITION BY stream, shard_id, sequence_number, COALESCE(a.subsequence_number, 0)
            ORDER BY kind DESC, object_key
        ) AS copy
    FROM archive_lines AS a
) AS numbered
WHERE copy = 1;
