SELECT event_time, actor_id, server_name, tool_name, decision, approval_id FROM mcp_audit
WHERE action_class = 'write' AND decision = 'ALLOW' AND (approval_id IS NULL OR approval_id = '')
  AND event_time >= NOW() - INTERVAL '10 minutes' ORDER BY event_time DESC;
