SET lock_timeout = '2s';
CREATE INDEX CONCURRENTLY orders_ref_idx ON orders (ref);
