SET lock_timeout = '2s';
SET statement_timeout = '5min';
CREATE INDEX orders_customer_idx ON orders (customer_id);
