-- Gate "unapproved write calls" (target 0; page: > 0 in any 10 m window; Governance On-call).
-- Write and destructive calls ALLOWed without an approval in the last 10 minutes.
SELECT event_time, actor_id, server_name, tool_name, action_class, decision, approval_id, chain_id
FROM mcp_audit
WHERE action_class IN ('write', 'destructive') AND decision = 'ALLOW'
  AND (approval_id IS NULL OR approval_id = '')
  AND event_time >= NOW() - INTERVAL '10 minutes'
ORDER BY event_time DESC;
