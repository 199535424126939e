-- About a million rows with the skew real systems have: a few heavy customers, traffic growing
-- over time, almost every job completed and only a handful pending. Seeded, so every run
-- generates the same data relative to now().
\echo '== Generating 50,000 users, 700,000 orders and 300,000 ml_jobs'
SELECT setseed(0.42) \g /dev/null

INSERT INTO dbopt_demo.users (username, email, created_at)
SELECT 'user' || g, 'user' || g || '@example.com', now() - random() * interval '1095 days'
  FROM generate_series(1, 50000) AS g;

-- user_id: power-law (user 1 orders the most); created_at: three years, denser towards now;
-- status: 80% completed, recent orders more often still pending.
INSERT INTO dbopt_demo.orders (user_id, total_amount, status, created_at)
SELECT 1 + floor(49999 * power(random(), 3))::bigint,
       round((5 + 495 * random() * random())::numeric, 2),
       CASE WHEN age < interval '2 days' AND r < 0.5 THEN 'pending'
            WHEN r < 0.80 THEN 'completed'
            WHEN r < 0.92 THEN 'cancelled'
            WHEN r < 0.97 THEN 'refunded'
            ELSE 'pending' END,
       now() - age
  FROM (SELECT random() AS r, power(random(), 2) * interval '1095 days' AS age
          FROM generate_series(1, 700000)) AS o;

-- 93% completed, 4% failed, 2% running and 1% pending; running and pending jobs are recent.
INSERT INTO dbopt_demo.ml_jobs (job_uuid, input_text, status, result_score, result_label, created_at, completed_at)
SELECT md5('job' || g)::uuid::text,
       'classify: sample input ' || g,
       status,
       CASE WHEN status = 'completed' THEN round(random()::numeric, 4) END,
       CASE WHEN status = 'completed' THEN (ARRAY['positive', 'negative', 'neutral'])[1 + (g % 3)] END,
       created_at,
       CASE WHEN status IN ('completed', 'failed') THEN created_at + random() * interval '90 seconds' END
  FROM (SELECT g, status,
               (now() AT TIME ZONE 'utc') - CASE WHEN status IN ('pending', 'running')
                                                 THEN spread * interval '2 hours'
                                                 ELSE spread * interval '120 days' END AS created_at
          FROM (SELECT g, random() AS spread,
                       CASE WHEN r < 0.01 THEN 'pending'
                            WHEN r < 0.03 THEN 'running'
                            WHEN r < 0.07 THEN 'failed'
                            ELSE 'completed' END AS status
                  FROM (SELECT g, random() AS r FROM generate_series(1, 300000) AS g) AS draw
               ) AS drawn
       ) AS j;

VACUUM ANALYZE dbopt_demo.users, dbopt_demo.orders, dbopt_demo.ml_jobs;
