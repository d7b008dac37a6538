--------------------------------------------------------------------------
-- Metering: the bulk path compay.record_usage_batch(), and the sum of two
-- custom-metric objects that it and compay.record_usage() (in C,
-- src/metering.c; declared in src/jobs.sql beside the tables) keep in
-- compay.usage_totals.
--------------------------------------------------------------------------

-- Two objects of custom metrics summed per name.
CREATE FUNCTION compay.add_custom_metrics(a jsonb, b jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(pg_catalog.jsonb_object_agg(c.key, c.q), '{}')
    FROM (SELECT e.key, pg_catalog.sum(e.value::numeric) AS q
          FROM (SELECT * FROM pg_catalog.jsonb_each(a)
                UNION ALL
                SELECT * FROM pg_catalog.jsonb_each(b)) e
          GROUP BY e.key) c
$$;
COMMENT ON FUNCTION compay.add_custom_metrics(jsonb, jsonb) IS
    'the sum per name of two objects of custom metrics (usage totals)';
REVOKE ALL ON FUNCTION compay.add_custom_metrics(jsonb, jsonb) FROM PUBLIC;

-- 22004/22023/54000 for the first bad sample of a batch, in batch order.
CREATE FUNCTION compay.check_usage_batch(task_ids text[], sample_ids text[],
    sampled_at timestamptz[], metrics compay.resource_metrics[]) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    n integer := cardinality(task_ids);
    null_at integer := array_position(metrics, NULL);
    bad record;
BEGIN
    IF cardinality(sample_ids) <> n OR cardinality(sampled_at) <> n OR cardinality(metrics) <> n THEN
        RAISE EXCEPTION 'task_ids, sample_ids, sampled_at and metrics must have as many elements'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('They have %s, %s, %s and %s.', n, cardinality(sample_ids),
                                  cardinality(sampled_at), cardinality(metrics));
    END IF;
    IF n > 10000 THEN
        RAISE EXCEPTION 'a batch has at most 10000 samples, not %', n
            USING ERRCODE = 'program_limit_exceeded', HINT = 'Send the samples in several batches.';
    END IF;
    SELECT u.i, u.t IS NULL OR u.s IS NULL OR u.at IS NULL OR u.i = null_at
               AS null_value,
           length(u.t) NOT BETWEEN 1 AND 200 AS bad_task,
           length(u.s) NOT BETWEEN 1 AND 200 AS bad_sample
    INTO bad
    FROM unnest(task_ids, sample_ids, sampled_at) WITH ORDINALITY AS u(t, s, at, i)
    WHERE u.t IS NULL OR u.s IS NULL OR u.at IS NULL OR u.i = null_at
       OR length(u.t) NOT BETWEEN 1 AND 200 OR length(u.s) NOT BETWEEN 1 AND 200
       OR NOT isfinite(u.at)
    ORDER BY u.i LIMIT 1;
    IF bad.null_value THEN
        RAISE EXCEPTION 'sample % of the batch has a NULL task id, sample id, time or metrics', bad.i
            USING ERRCODE = 'null_value_not_allowed';
    ELSIF bad.bad_task THEN
        RAISE EXCEPTION 'a task id has 1 to 200 characters'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('Sample %s of the batch.', bad.i);
    ELSIF bad.bad_sample THEN
        RAISE EXCEPTION 'a sample id has 1 to 200 characters'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('Sample %s of the batch.', bad.i);
    ELSIF bad.i IS NOT NULL THEN
        RAISE EXCEPTION 'sampled_at must be a finite time'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('Sample %s of the batch.', bad.i);
    END IF;
    PERFORM count(compay.check_metrics(m)) FROM unnest(metrics) AS m;
    SELECT u.t, u.s INTO bad
    FROM unnest(task_ids, sample_ids) AS u(t, s)
    GROUP BY u.t, u.s HAVING count(*) > 1 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'sample "%" of task "%" is twice in the batch', left(bad.s, 64), left(bad.t, 64)
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A sample id names one sample of a task.';
    END IF;
END $$;
REVOKE ALL ON FUNCTION compay.check_usage_batch(text[], text[], timestamptz[],
    compay.resource_metrics[]) FROM PUBLIC;

-- The bulk path of compay.record_usage(): the samples of one node, for
-- one or more of its tasks, in one call.  The same checks, all made
-- before anything is written; the job rows locked FOR UPDATE in id order
-- (so concurrent batches wait for each other, never deadlock); one INSERT
-- ... ON CONFLICT DO NOTHING of every sample (a sample id recorded before
-- is a retry, skipped) and one upsert of the totals of the tasks that got
-- new samples, whose sums are then checked as record_usage checks them.
-- Each total only grows, so checking the sum of the whole batch is
-- checking every sample of it in turn.  Returns how many were new.
CREATE FUNCTION compay.record_usage_batch(task_ids text[], node_id text, sample_ids text[],
    sampled_at timestamptz[], metrics compay.resource_metrics[]) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, compay, pg_temp AS $$
DECLARE
    j record;
    tasks text[];
    locked integer := 0;
    recorded integer;
    changed bigint[];
    missing text;
BEGIN
    IF task_ids IS NULL OR node_id IS NULL OR sample_ids IS NULL OR sampled_at IS NULL
       OR metrics IS NULL THEN
        RAISE EXCEPTION 'task_ids, node_id, sample_ids, sampled_at and metrics must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM compay.check_node_id(node_id);
    PERFORM compay.check_usage_batch(task_ids, sample_ids, sampled_at, metrics);
    PERFORM compay.require_node(node_id);       -- and below: the tasks' provider
    -- Each task once: a node's batch names few tasks, many times each.
    tasks := ARRAY(SELECT DISTINCT t FROM unnest(task_ids) AS t);
    FOR j IN SELECT jobs.task_id, jobs.status, jobs.provider FROM compay.jobs
             WHERE jobs.task_id = ANY (tasks) ORDER BY jobs.id FOR UPDATE LOOP
        locked := locked + 1;
        IF j.status = 'paid' THEN
            RAISE EXCEPTION 'task "%" is already paid', left(j.task_id, 64)
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      DETAIL = 'Usage of a paid task can no longer change what it cost.';
        END IF;
        IF j.status IN ('failed', 'timed_out') THEN
            RAISE EXCEPTION 'task "%" is closed: it is %', left(j.task_id, 64), j.status
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
        IF j.provider IS DISTINCT FROM node_id THEN
            RAISE EXCEPTION 'node "%" does not run task "%"', left(node_id, 64), left(j.task_id, 64)
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'Only the task''s provider reports its usage.';
        END IF;
    END LOOP;
    IF locked < cardinality(tasks) THEN
        SELECT u.t INTO missing FROM unnest(task_ids) WITH ORDINALITY AS u(t, i)
        WHERE NOT EXISTS (SELECT 1 FROM compay.jobs WHERE jobs.task_id = u.t)
        ORDER BY u.i LIMIT 1;
        RAISE EXCEPTION 'task "%" does not exist', left(missing, 64) USING ERRCODE = 'PY010',
            HINT = 'Submit it first with compay.submit_job() or compay.submit_task().';
    END IF;

    WITH ins AS (
        INSERT INTO compay.usage_samples (job_id, sample_id, node_id, sampled_at, cpu_seconds,
            memory_byte_hours, storage_byte_hours, network_bytes_in, network_bytes_out,
            gpu_seconds, custom)
        SELECT jobs.id, u.s, record_usage_batch.node_id, u.at, coalesce(u.cpu, 0),
            coalesce(u.mem, 0), coalesce(u.sto, 0), coalesce(u.nin, 0), coalesce(u.nout, 0),
            coalesce(u.gpu, 0), nullif(u.custom, '{}')
        FROM unnest(task_ids, sample_ids, sampled_at, metrics)
                 AS u(t, s, at, cpu, mem, sto, nin, nout, gpu, custom)
        JOIN compay.jobs ON jobs.task_id = u.t
        ON CONFLICT (job_id, sample_id) DO NOTHING
        RETURNING usage_samples.*),
    cust AS (
        SELECT c.job_id, jsonb_object_agg(c.key, c.q) AS custom
        FROM (SELECT ins.job_id, e.key, sum(e.value::numeric) AS q
              FROM ins, jsonb_each(ins.custom) e GROUP BY ins.job_id, e.key) c
        GROUP BY c.job_id),
    totals AS (
        INSERT INTO compay.usage_totals AS t
        SELECT ins.job_id, sum(ins.cpu_seconds), sum(ins.memory_byte_hours),
            sum(ins.storage_byte_hours), sum(ins.network_bytes_in::numeric),
            sum(ins.network_bytes_out::numeric), sum(ins.gpu_seconds),
            coalesce(cust.custom, '{}')
        FROM ins LEFT JOIN cust ON cust.job_id = ins.job_id
        GROUP BY ins.job_id, cust.custom
        ON CONFLICT (job_id) DO UPDATE
        SET cpu_seconds = t.cpu_seconds + EXCLUDED.cpu_seconds,
            memory_byte_hours = t.memory_byte_hours + EXCLUDED.memory_byte_hours,
            storage_byte_hours = t.storage_byte_hours + EXCLUDED.storage_byte_hours,
            network_bytes_in = t.network_bytes_in + EXCLUDED.network_bytes_in,
            network_bytes_out = t.network_bytes_out + EXCLUDED.network_bytes_out,
            gpu_seconds = t.gpu_seconds + EXCLUDED.gpu_seconds,
            custom = CASE WHEN EXCLUDED.custom = '{}' THEN t.custom
                          ELSE compay.add_custom_metrics(t.custom, EXCLUDED.custom) END)
    SELECT count(*), array_agg(DISTINCT ins.job_id) INTO recorded, changed FROM ins;

    SELECT jobs.task_id, t.network_bytes_in, t.network_bytes_out INTO j
    FROM compay.usage_totals t JOIN compay.jobs ON jobs.id = t.job_id
    WHERE t.job_id = ANY (changed)
      AND greatest(t.network_bytes_in, t.network_bytes_out) > 9223372036854775807
    ORDER BY t.job_id LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'usage of task "%" would exceed 2^63 - 1 network bytes', left(j.task_id, 64)
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('With this batch the task would total %s bytes in and %s out.',
                                  j.network_bytes_in, j.network_bytes_out);
    END IF;
    -- A job type's reward (compute_reward()) does not price the usage.
    PERFORM count(compay.check_price(
                ROW(t.cpu_seconds, t.memory_byte_hours, t.storage_byte_hours, t.network_bytes_in,
                    t.network_bytes_out, t.gpu_seconds, t.custom)::compay.resource_metrics,
                jobs.task_type))
    FROM compay.usage_totals t JOIN compay.jobs ON jobs.id = t.job_id
    WHERE t.job_id = ANY (changed)
      AND NOT EXISTS (SELECT 1 FROM compay.job_types WHERE job_type = jobs.task_type);
    RETURN recorded;
END $$;
COMMENT ON FUNCTION compay.record_usage_batch(text[], text, text[], timestamptz[],
    compay.resource_metrics[]) IS
    'records the usage samples of one node (element i of each array: one sample), all or none; a sample id recorded before is skipped; returns how many were new';
REVOKE ALL ON FUNCTION compay.record_usage_batch(text[], text, text[], timestamptz[],
    compay.resource_metrics[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compay.record_usage_batch(text[], text, text[], timestamptz[],
    compay.resource_metrics[]) TO compay_app, compay_node;
