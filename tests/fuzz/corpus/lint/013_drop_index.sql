SET lock_timeout = '2s';
SET statement_timeout = '5min';
DROP INDEX orders_old_idx;
