-- One known plaintext sealed under each key version that sealed data here,
-- so Open can tell a wrong or missing key file before any token is read.
CREATE TABLE key_checks (
	version bigint PRIMARY KEY CHECK (version > 0),
	sealed  bytea NOT NULL
);
