-- Gate "QUARANTINE ratio" (target < 1 %; page: > 3 % for 15 m, from 20 calls; Safety Team).
-- Withheld results over all dispatched calls (those with an output verdict) of the last
-- 5 minutes; the gateway pages when this held for 15 minutes.
SELECT SUM(CASE WHEN output_decision = 'QUARANTINE' THEN 1 ELSE 0 END) AS quarantined,
       COUNT(*) AS dispatched,
       100.0 * CAST(SUM(CASE WHEN output_decision = 'QUARANTINE' THEN 1 ELSE 0 END) AS DOUBLE PRECISION)
         / NULLIF(COUNT(*), 0) AS percent
FROM mcp_audit
WHERE output_decision <> '' AND event_time >= NOW() - INTERVAL '5 minutes';
