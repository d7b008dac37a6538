-- Setup of test/bench/metering.sh: 1,000 tasks without escrow, task t<n>
-- run by provider p<n> with id n in compay.jobs (checked below: the plain
-- INSERT of the baseline uses n as job_id), and the baseline tables:
-- compay.usage_samples's columns, defaults and primary key, without (the
-- baseline) and with (for reference) its foreign key to compay.jobs.
\set ON_ERROR_STOP on
CREATE EXTENSION compay;
CREATE SCHEMA bench;
SELECT count(compay.submit_task('t' || i, 'r' || i, 'p' || i, 'bench')) AS tasks
FROM generate_series(1, 1000) AS i;
DO $$
BEGIN
    IF (SELECT count(*) FILTER (WHERE task_id = 't' || id AND provider = 'p' || id
                                      AND status = 'assigned')
        FROM compay.jobs) <> 1000 THEN
        RAISE EXCEPTION 'tasks t1..t1000 are not jobs 1..1000 of providers p1..p1000';
    END IF;
END $$;
CREATE TABLE bench.usage_samples (LIKE compay.usage_samples INCLUDING DEFAULTS INCLUDING INDEXES);
CREATE TABLE bench.usage_samples_fk (LIKE compay.usage_samples INCLUDING DEFAULTS INCLUDING INDEXES,
    FOREIGN KEY (job_id) REFERENCES compay.jobs (id));
VACUUM ANALYZE;
