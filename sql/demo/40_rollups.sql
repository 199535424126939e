-- Issue 5: rolling aggregates. Seed 001 (A1) reports the top 10 users by completed-order
-- spending over the last 30 days by scanning orders every time; A3 proposes user_spending_30d,
-- one row per user with rolling totals. dbopt keeps it exact at every write with statement-level
-- triggers, and moves its window with refresh_rolling.
\echo '== Seed 001 A3: user_spending_30d over dbopt_demo.orders'
-- refresh_rolling reads the edges of the window through an index on the time column.
CREATE INDEX IF NOT EXISTS orders_created_at ON dbopt_demo.orders (created_at);
\timing on
SELECT dbopt.create_rolling_aggregate(
    name => 'dbopt_demo.user_spending_30d', source => 'dbopt_demo.orders',
    group_by => 'user_id', time_column => 'created_at',
    measures => 'count(*) AS total_orders, sum(total_amount) AS total_spent',
    filter => $$status = 'completed'$$);
\timing off
SELECT count(*) AS users, sum(total_orders) AS orders, sum(total_spent) AS spent
  FROM dbopt_demo.user_spending_30d;

\echo '== The top-10 report, as seed 001 A1 writes it (scanning orders), then from user_spending_30d'
\timing on
\ir seed001_a1.sql
SELECT u.id, u.username, s.total_orders, s.total_spent
  FROM dbopt_demo.user_spending_30d s JOIN dbopt_demo.users u ON u.id = s.user_id
 ORDER BY s.total_spent DESC
 LIMIT 10;
\timing off

\echo '== Writes: a refund of the 1st user''s biggest order shows at once; an order placed now for the'
\echo '   10th user counts from the next refresh (the table is the report as of its last refresh)'
SELECT user_id AS tenth FROM dbopt_demo.user_spending_30d ORDER BY total_spent DESC OFFSET 9 LIMIT 1 \gset
SELECT user_id AS first FROM dbopt_demo.user_spending_30d ORDER BY total_spent DESC LIMIT 1 \gset
SELECT user_id, total_orders, total_spent FROM dbopt_demo.user_spending_30d
 WHERE user_id IN (:first, :tenth) ORDER BY total_spent DESC;
INSERT INTO dbopt_demo.orders (user_id, total_amount, status) VALUES (:tenth, 999.99, 'completed');
UPDATE dbopt_demo.orders SET status = 'refunded'
 WHERE id = (SELECT o.id FROM dbopt_demo.orders o
              WHERE o.user_id = :first AND o.status = 'completed'
                AND o.created_at >= now() - interval '30 days'
              ORDER BY o.total_amount DESC LIMIT 1);
SELECT user_id, total_orders, total_spent FROM dbopt_demo.user_spending_30d
 WHERE user_id IN (:first, :tenth) ORDER BY total_spent DESC;

\echo '== Time passing: refresh_rolling drops what aged out and adds the new order; verify_rolling finds no difference'
CALL dbopt.refresh_rolling('dbopt_demo.user_spending_30d');
SELECT user_id, total_orders, total_spent FROM dbopt_demo.user_spending_30d
 WHERE user_id IN (:first, :tenth) ORDER BY total_spent DESC;
SELECT count(*) AS differences FROM dbopt.verify_rolling('dbopt_demo.user_spending_30d');
SELECT aggregate, window_size, bucket_size, lookahead, window_start, window_end,
       round(last_refresh_ms::numeric, 1) AS refresh_ms
  FROM dbopt.rolling_aggregates;
