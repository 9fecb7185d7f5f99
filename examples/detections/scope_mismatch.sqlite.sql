-- Gate "scope mismatch attempts" (target < 0.1 %; page: >= 1 % for 15 m, from 20 calls;
-- Identity Team). Calls refused by the scope gate over all tools/call rows of the last
-- 5 minutes (admin actions are not calls); the gateway pages when this held for 15 minutes.
SELECT SUM(CASE WHEN reason = 'scope_mismatch' OR reason LIKE 'scope_mismatch:%' THEN 1 ELSE 0 END)
         AS scope_mismatches,
       COUNT(*) AS calls,
       100.0 * SUM(CASE WHEN reason = 'scope_mismatch' OR reason LIKE 'scope_mismatch:%' THEN 1 ELSE 0 END)
         / NULLIF(COUNT(*), 0) AS percent
FROM mcp_audit
WHERE action_class <> 'admin'
  AND event_time >= strftime('%Y-%m-%d %H:%M:%f', 'now', '-5 minutes');
