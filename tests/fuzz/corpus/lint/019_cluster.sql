SET lock_timeout = '2s';
SET statement_timeout = '5min';
CLUSTER orders USING orders_pkey;
