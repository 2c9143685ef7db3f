SET lock_timeout = '2s';
SET statement_timeout = '5min';
ALTER TABLE orders ADD COLUMN token uuid DEFAULT gen_random_uuid();
