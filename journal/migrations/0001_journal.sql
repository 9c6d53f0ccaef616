-- The journal's tables in a node's schema (the connection's search_path).
-- One node per schema; every shard's rows are keyed by its shard number.

-- One row per batch: the frames of records first_seq..=last_seq exactly as
-- the file medium would write them (length + seq + CRC32C framing), so the
-- same parser verifies them at recovery. One transaction per batch.
CREATE TABLE journal_batches (
    shard integer NOT NULL,
    first_seq bigint NOT NULL,
    last_seq bigint NOT NULL,
    frames bytea NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shard, first_seq),
    CHECK (first_seq >= 1 AND last_seq >= first_seq)
);

-- A shard's whole state as of record seq; once one is committed, the
-- batches it covers and older snapshots are deleted.
CREATE TABLE snapshots (
    shard integer NOT NULL,
    seq bigint NOT NULL,
    bytes bytea NOT NULL,
    -- crc32c of bytes, checked at recovery
    checksum bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (shard, seq)
);

-- Events recorded in the same transaction as the batch that carries them,
-- for the relay to publish (API.md Events).
CREATE TABLE outbox (
    shard integer NOT NULL,
    -- position in the shard's event log
    event_offset bigint NOT NULL,
    event_id text NOT NULL UNIQUE,
    topic text NOT NULL,
    "key" text NOT NULL,
    kind text NOT NULL,
    -- milliseconds since the Unix epoch
    "at" bigint NOT NULL,
    payload bytea NOT NULL,
    -- journal record that carried the event
    seq bigint NOT NULL,
    published boolean NOT NULL DEFAULT false,
    PRIMARY KEY (shard, event_offset)
);

CREATE INDEX outbox_unpublished ON outbox (shard, event_offset) WHERE NOT published;
