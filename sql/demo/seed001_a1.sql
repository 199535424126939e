-- Seed 001 A1: top 10 users by completed-order spending in the last 30 days, as the seed writes it.
SELECT u.id, u.username, COUNT(o.id) AS total_orders, COALESCE(SUM(o.total_amount), 0) AS total_spent
  FROM dbopt_demo.users u
  JOIN dbopt_demo.orders o ON o.user_id = u.id
 WHERE o.created_at >= NOW() - INTERVAL '30 days' AND o.status = 'completed'
 GROUP BY u.id, u.username
 ORDER BY total_spent DESC
 LIMIT 10;
