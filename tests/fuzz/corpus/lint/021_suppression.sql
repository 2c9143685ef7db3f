SET lock_timeout = '2s';
SET statement_timeout = '5min';
-- lint: allow ban-drop-column
ALTER TABLE orders DROP COLUMN legacy2;
