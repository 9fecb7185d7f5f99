-- DESIGN.md's query on the embedded SQLite store: event_time is TEXT 'YYYY-MM-DD HH:MM:SS.ffffff'
-- (UTC), which sorts as time; strftime gives the bound in the same shape.
SELECT event_time, actor_id, server_name, tool_name, decision, approval_id FROM mcp_audit
WHERE action_class = 'write' AND decision = 'ALLOW' AND (approval_id IS NULL OR approval_id = '')
  AND event_time >= strftime('%Y-%m-%d %H:%M:%f', 'now', '-10 minutes') ORDER BY event_time DESC;
