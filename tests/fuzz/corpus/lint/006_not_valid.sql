SET lock_timeout = '2s';
SET statement_timeout = '5min';
ALTER TABLE orders ADD CONSTRAINT orders_customer_fk
  FOREIGN KEY (customer_id) REFERENCES customers (id);
