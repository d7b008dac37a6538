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

-- Refunds and shortfalls, with the figures of compay.earnings().  <i>n</i>
-- receives 1 CREDIT by a real transfer and 0.25 of it is refunded: 0.75
-- net.  Shortfalls: 0.000000000002 XMR owed to <i>n</i> for d1; 0.3
-- CREDIT owed by dash-poor (a node with no earnings) to <i>n</i> for d3,
-- 0.1 of it collected: 0.2 owed.
SELECT compay.admin_deposit('dash-req', '1', 'CREDIT', 'funds') > 0 AS funded;
INSERT INTO compay.payments (task_id, from_node, to_node, amount, currency, method, status,
                             completed_at, transfer_id)
VALUES ('d2', 'dash-req', '<i>n</i>', '1', 'CREDIT', 'credit', 'completed', now() - interval '30 minutes',
        compay.transfer('dash-req', '<i>n</i>', '1'::compay.credit, 'd2', NULL, 'CREDIT'));
SELECT compay.refund((SELECT transfer_id FROM compay.payments WHERE task_id = 'd2'), '0.25') > 0 AS refunded;
INSERT INTO compay.jobs (task_id, requester, provider, task_type, currency, status, amount, created_at)
VALUES ('d3', 'dash-poor', '<i>n</i>', 'render', 'CREDIT', 'paid', '1', now() - interval '3 days');
INSERT INTO compay.shortfalls (job_id, requester, provider, currency, amount, collected)
VALUES ((SELECT id FROM compay.jobs WHERE task_id = 'd1'), 'req', '<i>n</i>', 'XMR', '0.000000000002', '0'),
       ((SELECT id FROM compay.jobs WHERE task_id = 'd3'), 'dash-poor', '<i>n</i>', 'CREDIT', '0.3', '0.1');
-- Each currency's two rows: the range (earned net, earnings, refunded,
-- unsettled, disputed, settling, completed) and all time now (earned,
-- refunded, rewards, pending, settled not paid, in flight, paid,
-- clawbacks owed, shortfalls owed to, owed by).
SELECT m[1] AS currency, m[2] AS in_range, m[3] AS all_time
FROM compay.earnings_dashboard('<i>n</i>', now() - interval '1 day', now()) p,
     regexp_matches(p, '<h2>(\w+)</h2><h3>In this range</h3><table><tr>[^/]*(?:/th><th>[^/]*)*/th></tr>(<tr>(?:<td>[^<]*</td>)*</tr>)</table><h3>All time, now</h3><table><tr>[^/]*(?:/th><th>[^/]*)*/th></tr>(<tr>(?:<td>[^<]*</td>)*</tr>)', 'g') m;
SELECT currency_code, earned, refunded, pending, clawbacks_owed, shortfalls_owed_to, shortfalls_owed_by
FROM compay.earnings('<i>n</i>');
-- dash-poor earned nothing and owes 0.2 CREDIT: its CREDIT section says
-- so; the pending-and-paid chart carries the figure.
SELECT m[1] AS currency, m[2] AS in_range, m[3] AS all_time
FROM compay.earnings_dashboard('dash-poor', now() - interval '1 day', now()) p,
     regexp_matches(p, '<h2>(\w+)</h2><h3>In this range</h3><table><tr>[^/]*(?:/th><th>[^/]*)*/th></tr>(<tr>(?:<td>[^<]*</td>)*</tr>)</table><h3>All time, now</h3><table><tr>[^/]*(?:/th><th>[^/]*)*/th></tr>(<tr>(?:<td>[^<]*</td>)*</tr>)', 'g') m;
SELECT p LIKE '%>shortfalls owed by the node</text><rect class="bar bar-2" x="300" y="250" width="560.0" height="20"/><text class="tick" x="868.0" y="265">0.2</text>%' AS owed_bar,
       p NOT LIKE '%No earnings in this range.%' AS has_section
FROM compay.earnings_dashboard('dash-poor', now() - interval '1 day', now()) p;

-- Read only: the pages run in a read-only transaction (as on a standby).
BEGIN TRANSACTION READ ONLY;
SELECT length(compay.earnings_dashboard('<i>n</i>', now() - interval '1 day', now())) > 1000 AS read_only_earnings,
       length(compay.network_dashboard(now() - interval '1 day', now())) > 1000 AS read_only_network;
COMMIT;
SELECT p.proname, p.provolatile FROM pg_proc p
WHERE p.pronamespace = 'compay'::regnamespace
  AND (p.proname LIKE 'dashboard%' OR p.proname IN ('earnings_dashboard', 'network_dashboard', 'html_escape'))
  AND p.provolatile = 'v';
