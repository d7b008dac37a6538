-- Dashboards (src/dashboard.sql): the escape function, the ranges and
-- nodes the pages refuse, node scoping, an empty page, an exact amount
-- and an escaped value on a page.  test/t/044_dashboards.pl renders both
-- pages in headless Chromium.
\i sql/include/fresh_extension.sql
\set VERBOSITY default
\set SHOW_CONTEXT never
SET TimeZone = 'UTC';

-- The escape function: the five characters, in any order, & first (an
-- entity is escaped again, not kept), NULL as the empty string.
SELECT compay.html_escape('<script>alert(1)</script>') AS script;
SELECT compay.html_escape('a & b < c > d "e" ''f''') AS all_five;
SELECT compay.html_escape('&amp;&lt;') AS entity_again;
SELECT compay.html_escape(NULL) = '' AS null_is_empty, compay.html_escape('') = '' AS empty;
SELECT compay.html_escape('gpu-1 ünïcödé ✓') AS unchanged;

-- Bad ranges: 22023, with the reason; a NULL node: 22004.
SELECT compay.earnings_dashboard('gpu-1', '2026-03-02', '2026-03-01'); \echo :LAST_ERROR_SQLSTATE
SELECT compay.earnings_dashboard('gpu-1', '2026-03-01 12:00', '2026-03-01 12:00'); \echo :LAST_ERROR_SQLSTATE
SELECT compay.earnings_dashboard('gpu-1', NULL, now()); \echo :LAST_ERROR_SQLSTATE
SELECT compay.earnings_dashboard('gpu-1', now(), NULL); \echo :LAST_ERROR_SQLSTATE
SELECT compay.earnings_dashboard('gpu-1', '-infinity', now()); \echo :LAST_ERROR_SQLSTATE
SELECT compay.earnings_dashboard('gpu-1', '2025-01-01', '2026-01-02 00:00:00.000001'); \echo :LAST_ERROR_SQLSTATE
SELECT compay.earnings_dashboard(NULL, now() - interval '1 day', now()); \echo :LAST_ERROR_SQLSTATE
SELECT compay.network_dashboard('2026-03-01 00:00:01', '2026-03-01'); \echo :LAST_ERROR_SQLSTATE
SELECT compay.network_dashboard(now(), 'infinity'); \echo :LAST_ERROR_SQLSTATE
SELECT compay.network_dashboard(NULL, NULL); \echo :LAST_ERROR_SQLSTATE
-- 366 days is the longest range.
SELECT compay.network_dashboard('2024-01-01', '2025-01-01') LIKE '<!DOCTYPE html>%' AS leap_year,
       compay.earnings_dashboard('gpu-1', '2025-01-01', '2026-01-02') LIKE '<!DOCTYPE html>%' AS days_366;

-- An empty range: a whole page that says so.
SELECT p LIKE '<!DOCTYPE html>%</html>' AS whole_page,
       p LIKE '%No earnings in this range.%' AS says_empty,
       p LIKE '%none in this range%' AS empty_tables
FROM compay.earnings_dashboard('gpu-none', now() - interval '1 day', now()) p;

-- One atomic unit earned by a node whose id and job type are markup: the
-- exact amount, and the markup only as text.
SELECT compay.admin_deposit('<i>n</i>', '0.000000000001', 'XMR', 'earnings') > 0 AS funded;
INSERT INTO compay.jobs (task_id, requester, provider, task_type, currency, status, amount,
                         created_at, started_at, completed_at)
VALUES ('d1', 'req', '<i>n</i>', 'x"><svg onload=1>', 'XMR', 'paid', '0.000000000001',
        now() - interval '2 hours', now() - interval '2 hours', now() - interval '1 hour');
INSERT INTO compay.payments (task_id, from_node, to_node, amount, currency, method, status, completed_at)
VALUES ('d1', 'req', '<i>n</i>', '0.000000000001', 'XMR', 'crypto', 'completed', now() - interval '1 hour');
SELECT p LIKE '%>0.000000000001<%' AS exact_amount,
       p LIKE '%&lt;i&gt;n&lt;/i&gt;%' AS node_escaped, p NOT LIKE '%<i>%' AS no_raw_node,
       p LIKE '%x&quot;&gt;&lt;svg onload=1&gt;%' AS job_type_escaped,
       p NOT LIKE '%<svg onload%' AS no_raw_job_type,
       p NOT LIKE '%<script%' AS no_script
FROM compay.earnings_dashboard('<i>n</i>', now() - interval '1 day', now()) p;
SELECT p LIKE '%&lt;i&gt;n&lt;/i&gt;%' AS node_escaped, p NOT LIKE '%<i>%' AS no_raw_node,
       p NOT LIKE '%<script%' AS no_script
FROM compay.network_dashboard(now() - interval '1 day', now()) p;

-- Node scoping: a node role reads its own page only; compay_reader
-- reads every page; the network page is not a node's.
CREATE ROLE dash_node LOGIN IN ROLE compay_node;
CREATE ROLE dash_reader LOGIN IN ROLE compay_reader;
SELECT compay.add_node_role('dash_node', '<i>n</i>');
SET ROLE dash_node;
SELECT compay.earnings_dashboard('<i>n</i>', now() - interval '1 day', now()) LIKE '%0.000000000001%' AS own_page;
SELECT compay.earnings_dashboard('gpu-1', now() - interval '1 day', now()); \echo :LAST_ERROR_SQLSTATE
SELECT compay.network_dashboard(now() - interval '1 day', now()); \echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SET ROLE dash_reader;
SELECT compay.earnings_dashboard('<i>n</i>', now() - interval '1 day', now()) LIKE '%0.000000000001%' AS reader_page;
SELECT compay.network_dashboard(now() - interval '1 day', now()) LIKE '%0.000000000001%' AS network_page;
-- The internal helpers are not callable.
SELECT compay.dashboard_earnings('<i>n</i>', now() - interval '1 day', now()); \echo :LAST_ERROR_SQLSTATE
RESET ROLE;
DROP ROLE dash_node;
DROP ROLE dash_reader;

-- Read only: the pages run in a read-only transaction (as on a standby).
BEGIN TRANSACTION READ ONLY;
SELECT length(compay.earnings_dashboard('<i>n</i>', now() - interval '1 day', now())) > 1000 AS read_only_earnings,
       length(compay.network_dashboard(now() - interval '1 day', now())) > 1000 AS read_only_network;
COMMIT;
SELECT p.proname, p.provolatile FROM pg_proc p
WHERE p.pronamespace = 'compay'::regnamespace
  AND (p.proname LIKE 'dashboard%' OR p.proname IN ('earnings_dashboard', 'network_dashboard', 'html_escape'))
  AND p.provolatile = 'v';
