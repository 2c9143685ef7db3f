SET lock_timeout = '2s';
SET statement_timeout = '5min';
ALTER TABLE orders RENAME COLUMN total TO amount_total;
