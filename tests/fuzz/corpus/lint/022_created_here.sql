SET lock_timeout = '2s';
SET statement_timeout = '5min';
CREATE INDEX shipments_order_idx ON shipments (order_id);
