-- kiln's queue, schema version 1: the jobs, their log chunks, the functions workers and submitters
-- call, and the two roles. `kiln queue migrate` applies it in one transaction.
--
-- Every write goes through a SECURITY DEFINER function: a role is granted EXECUTE on the functions
-- of its part of the protocol and SELECT on the tables, never a write on a table, so a submitter
-- cannot claim, fence or complete a job and a worker cannot submit one. The functions run as the
-- role that migrated (the schema's owner), with a fixed search_path.

CREATE SCHEMA kiln;

CREATE TABLE kiln.schema_version (
    version integer NOT NULL
);

CREATE TABLE kiln.jobs (
    id uuid PRIMARY KEY,
    -- Submission order among jobs of the same priority and time.
    seq bigint GENERATED ALWAYS AS IDENTITY,
    queue text NOT NULL,
    -- `key=value` labels a worker must have (all of them) to claim the job.
    labels text[] NOT NULL DEFAULT '{}',
    priority integer NOT NULL DEFAULT 0,
    state text NOT NULL DEFAULT 'QUEUED' CHECK (state IN
        ('QUEUED', 'IN_PROGRESS', 'SUCCEEDED', 'FAILED', 'FAULT', 'STOPPED', 'TIMED_OUT')),
    phase text,
    -- The fencing token: incremented by every claim, never decreased.
    attempt integer NOT NULL DEFAULT 0,
    -- Lost leases charged to the job (a release is not charged).
    infra_retries integer NOT NULL DEFAULT 0,
    lease_until timestamptz,
    worker text,
    submitted_by text NOT NULL DEFAULT session_user,
    submitted_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    started_at timestamptz,
    ended_at timestamptz,
    queued_timeout interval NOT NULL,
    -- What to build: source digest, buildspec, options, secret references (never values).
    description jsonb NOT NULL,
    -- What it gave: artifact digests, exit code, or why it ended.
    result jsonb,
    cancel_requested boolean NOT NULL DEFAULT false,
    retry_of uuid REFERENCES kiln.jobs (id),
    -- The log of the current attempt: bytes stored so far, the cap, whether it was reached.
    log_cap bigint NOT NULL,
    log_bytes bigint NOT NULL DEFAULT 0,
    log_truncated boolean NOT NULL DEFAULT false
);
CREATE INDEX jobs_queued ON kiln.jobs (queue, priority DESC, submitted_at, seq) WHERE state = 'QUEUED';
CREATE INDEX jobs_leased ON kiln.jobs (lease_until) WHERE state = 'IN_PROGRESS';

CREATE TABLE kiln.job_logs (
    job uuid NOT NULL REFERENCES kiln.jobs (id) ON DELETE CASCADE,
    attempt integer NOT NULL,
    "offset" bigint NOT NULL,
    bytes bytea NOT NULL,
    PRIMARY KEY (job, attempt, "offset")
);

-- Submitters.

CREATE FUNCTION kiln.submit(p_id uuid, p_queue text, p_labels text[], p_priority integer,
    p_description jsonb, p_queued_timeout interval, p_log_cap bigint)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = kiln, pg_temp AS $$
BEGIN
    -- The id is the client's: submitting the same job again (a retried request) is one job.
    INSERT INTO jobs (id, queue, labels, priority, description, queued_timeout, log_cap)
    VALUES (p_id, p_queue, p_labels, p_priority, p_description, p_queued_timeout, p_log_cap)
    ON CONFLICT (id) DO NOTHING;
    PERFORM pg_notify('kiln_jobs', p_queue);
END $$;

-- A queued job ends STOPPED at once; a running one gets the flag its worker's heartbeat returns.
-- The job's state before and after; no row for an unknown job.
CREATE FUNCTION kiln.cancel(p_job uuid)
RETURNS TABLE (r_was text, r_now text)
LANGUAGE sql SECURITY DEFINER SET search_path = kiln, pg_temp AS $$
    WITH old AS (SELECT id, state FROM jobs WHERE id = p_job FOR UPDATE)
    UPDATE jobs j SET
        state = CASE WHEN j.state = 'QUEUED' THEN 'STOPPED' ELSE j.state END,
        ended_at = CASE WHEN j.state = 'QUEUED' THEN clock_timestamp() ELSE j.ended_at END,
        result = CASE WHEN j.state = 'QUEUED' THEN '{"reason": "cancelled while queued"}'::jsonb
                 ELSE j.result END,
        cancel_requested = j.cancel_requested OR j.state IN ('QUEUED', 'IN_PROGRESS')
    FROM old
    WHERE j.id = old.id
    RETURNING old.state, j.state;
$$;

-- CodeBuild's "retry build": a new job with the old one's description, referring to it.
CREATE FUNCTION kiln.retry(p_job uuid, p_new uuid)
RETURNS TABLE (retried boolean, old_state text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = kiln, pg_temp AS $$
DECLARE
    old jobs%ROWTYPE;
BEGIN
    SELECT * INTO old FROM jobs WHERE id = p_job;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF old.state NOT IN ('FAILED', 'FAULT', 'STOPPED', 'TIMED_OUT') THEN
        RETURN QUERY SELECT false, old.state;
        RETURN;
    END IF;
    INSERT INTO jobs (id, queue, labels, priority, description, queued_timeout, log_cap, retry_of)
    VALUES (p_new, old.queue, old.labels, old.priority, old.description, old.queued_timeout,
            old.log_cap, old.id);
    PERFORM pg_notify('kiln_jobs', old.queue);
    RETURN QUERY SELECT true, old.state;
END $$;

-- Workers.

-- One statement: the best queued job this worker's labels satisfy, locked past the other claimers.
CREATE FUNCTION kiln.claim(p_queue text, p_labels text[], p_worker text, p_lease double precision)
RETURNS SETOF kiln.jobs LANGUAGE sql SECURITY DEFINER SET search_path = kiln, pg_temp AS $$
    UPDATE jobs SET
        state = 'IN_PROGRESS', attempt = attempt + 1, worker = p_worker,
        lease_until = clock_timestamp() + make_interval(secs => p_lease),
        started_at = clock_timestamp(), phase = NULL, log_bytes = 0, log_truncated = false
    WHERE id = (
        SELECT id FROM jobs
        WHERE state = 'QUEUED' AND queue = p_queue AND labels <@ p_labels
          AND submitted_at + queued_timeout > clock_timestamp()
        ORDER BY priority DESC, submitted_at, seq
        LIMIT 1
        FOR UPDATE SKIP LOCKED)
    RETURNING *;
$$;

-- Renews the lease (and records the phase) while it is held: whether cancellation was requested,
-- NULL once the lease is lost.
CREATE FUNCTION kiln.heartbeat(p_job uuid, p_attempt integer, p_lease double precision, p_phase text)
RETURNS boolean LANGUAGE sql SECURITY DEFINER SET search_path = kiln, pg_temp AS $$
    UPDATE jobs SET
        lease_until = clock_timestamp() + make_interval(secs => p_lease),
        phase = coalesce(p_phase, phase)
    WHERE id = p_job AND attempt = p_attempt AND state = 'IN_PROGRESS'
      AND lease_until > clock_timestamp()
    RETURNING cancel_requested;
$$;

-- Appends one chunk of the attempt's log at its byte offset. status: appended, duplicate (that
-- offset is stored already: a retried request), truncated (the cap is reached: the chunk is cut or
-- dropped, and a marker line stored once), gap (the offset is not where the log ends), lease_lost.
CREATE FUNCTION kiln.append_log(p_job uuid, p_attempt integer, p_offset bigint, p_bytes bytea)
RETURNS TABLE (status text, log_end bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = kiln, pg_temp AS $$
DECLARE
    j jobs%ROWTYPE;
    keep bigint;
    marker bytea;
BEGIN
    SELECT * INTO j FROM jobs
    WHERE id = p_job AND attempt = p_attempt AND state = 'IN_PROGRESS'
      AND lease_until > clock_timestamp()
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'lease_lost'::text, 0::bigint;
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM job_logs l
               WHERE l.job = p_job AND l.attempt = p_attempt AND l."offset" = p_offset) THEN
        RETURN QUERY SELECT 'duplicate'::text, j.log_bytes;
        RETURN;
    END IF;
    IF j.log_truncated THEN
        RETURN QUERY SELECT 'truncated'::text, j.log_bytes;
        RETURN;
    END IF;
    IF p_offset <> j.log_bytes THEN
        RETURN QUERY SELECT 'gap'::text, j.log_bytes;
        RETURN;
    END IF;
    IF j.log_bytes + length(p_bytes) <= j.log_cap THEN
        INSERT INTO job_logs (job, attempt, "offset", bytes) VALUES (p_job, p_attempt, p_offset, p_bytes);
        UPDATE jobs SET log_bytes = log_bytes + length(p_bytes) WHERE id = p_job;
        RETURN QUERY SELECT 'appended'::text, j.log_bytes + length(p_bytes);
        RETURN;
    END IF;
    keep := j.log_cap - j.log_bytes;
    IF keep > 0 THEN
        INSERT INTO job_logs (job, attempt, "offset", bytes)
        VALUES (p_job, p_attempt, p_offset, substring(p_bytes FROM 1 FOR keep::integer));
    END IF;
    marker := convert_to(format(E'\n[kiln] the log reached its cap of %s bytes: the rest of it is not stored\n',
                                j.log_cap), 'UTF8');
    INSERT INTO job_logs (job, attempt, "offset", bytes) VALUES (p_job, p_attempt, j.log_cap, marker);
    UPDATE jobs SET log_bytes = j.log_cap + length(marker), log_truncated = true WHERE id = p_job;
    RETURN QUERY SELECT 'truncated'::text, j.log_cap + length(marker);
END $$;

-- The fenced end of an attempt: false once the lease is lost.
CREATE FUNCTION kiln.complete(p_job uuid, p_attempt integer, p_state text, p_result jsonb)
RETURNS boolean LANGUAGE sql SECURITY DEFINER SET search_path = kiln, pg_temp AS $$
    WITH done AS (
        UPDATE jobs SET state = p_state, result = p_result, ended_at = clock_timestamp(),
            lease_until = NULL, phase = 'COMPLETED'
        WHERE id = p_job AND attempt = p_attempt AND state = 'IN_PROGRESS'
          AND lease_until > clock_timestamp()
          AND p_state IN ('SUCCEEDED', 'FAILED', 'FAULT', 'STOPPED', 'TIMED_OUT')
        RETURNING true AS ok)
    SELECT coalesce((SELECT ok FROM done), false);
$$;

-- Gives a job back to the queue without charging it (a draining worker): false once the lease is
-- lost. A job whose cancellation was requested ends STOPPED instead.
CREATE FUNCTION kiln.release(p_job uuid, p_attempt integer)
RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER SET search_path = kiln, pg_temp AS $$
DECLARE
    q text;
BEGIN
    UPDATE jobs SET
        state = CASE WHEN cancel_requested THEN 'STOPPED' ELSE 'QUEUED' END,
        ended_at = CASE WHEN cancel_requested THEN clock_timestamp() END,
        worker = NULL, lease_until = NULL, phase = NULL
    WHERE id = p_job AND attempt = p_attempt AND state = 'IN_PROGRESS'
      AND lease_until > clock_timestamp()
    RETURNING queue INTO q;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM pg_notify('kiln_jobs', q);
    RETURN true;
END $$;

-- Any worker may call it, at any time, concurrently: jobs whose lease expired go back to the queue
-- (an infrastructure retry) or, after p_max_retries of them, end FAULT; a job whose cancellation was
-- requested ends STOPPED; jobs queued longer than their queued timeout end TIMED_OUT.
CREATE FUNCTION kiln.reap(p_max_retries integer)
RETURNS TABLE (r_job uuid, r_state text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = kiln, pg_temp AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        WITH expired AS (
            UPDATE jobs j SET
                state = CASE WHEN j.cancel_requested THEN 'STOPPED'
                             WHEN j.infra_retries >= p_max_retries THEN 'FAULT'
                             ELSE 'QUEUED' END,
                infra_retries = CASE WHEN j.cancel_requested OR j.infra_retries >= p_max_retries
                                     THEN j.infra_retries ELSE j.infra_retries + 1 END,
                ended_at = CASE WHEN j.cancel_requested OR j.infra_retries >= p_max_retries
                                THEN clock_timestamp() END,
                result = CASE WHEN j.cancel_requested
                              THEN '{"reason": "cancelled; its worker was lost"}'::jsonb
                              WHEN j.infra_retries >= p_max_retries
                              THEN jsonb_build_object('reason', format(
                                  'the lease expired %s times: its workers were lost', j.infra_retries + 1))
                              ELSE j.result END,
                worker = NULL, lease_until = NULL, phase = NULL
            WHERE j.state = 'IN_PROGRESS' AND j.lease_until <= clock_timestamp()
            RETURNING j.id, j.state, j.queue
        ), timed_out AS (
            UPDATE jobs j SET
                state = 'TIMED_OUT', ended_at = clock_timestamp(),
                result = '{"reason": "queued timeout"}'::jsonb
            WHERE j.state = 'QUEUED' AND j.submitted_at + j.queued_timeout <= clock_timestamp()
            RETURNING j.id, j.state, j.queue
        )
        SELECT * FROM expired UNION ALL SELECT * FROM timed_out
    LOOP
        IF r.state = 'QUEUED' THEN
            PERFORM pg_notify('kiln_jobs', r.queue);
        END IF;
        r_job := r.id;
        r_state := r.state;
        RETURN NEXT;
    END LOOP;
END $$;

-- The roles. NOLOGIN groups: an operator makes login roles members of them (README).
DO $$
BEGIN
    CREATE ROLE kiln_submitter NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;
DO $$
BEGIN
    CREATE ROLE kiln_worker NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;

REVOKE ALL ON SCHEMA kiln FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA kiln FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA kiln FROM PUBLIC;
GRANT USAGE ON SCHEMA kiln TO kiln_submitter, kiln_worker;
GRANT SELECT ON kiln.schema_version, kiln.jobs, kiln.job_logs TO kiln_submitter, kiln_worker;
GRANT EXECUTE ON FUNCTION kiln.submit(uuid, text, text[], integer, jsonb, interval, bigint),
    kiln.cancel(uuid), kiln.retry(uuid, uuid) TO kiln_submitter;
GRANT EXECUTE ON FUNCTION kiln.claim(text, text[], text, double precision),
    kiln.heartbeat(uuid, integer, double precision, text),
    kiln.append_log(uuid, integer, bigint, bytea),
    kiln.complete(uuid, integer, text, jsonb),
    kiln.release(uuid, integer),
    kiln.reap(integer) TO kiln_worker;
