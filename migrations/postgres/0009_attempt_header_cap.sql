-- A receiver's response headers are kept up to 64 headers and 16 KiB per attempt; this
-- counts the ones left out after them (0 for every attempt recorded before the cap).
ALTER TABLE delivery_attempts ADD COLUMN response_headers_omitted BIGINT NOT NULL DEFAULT 0;
