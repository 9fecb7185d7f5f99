-- Gate "manifest drift outside deploy window" (target 0; page: > 0 with no linked change
-- ticket; MCP Platform). Drift covered by a deploy window or a ticket is recorded as
-- 'manifest_drift' and does not count.
SELECT event_time, upstream, detail
FROM gate_events
WHERE gate = 'manifest_drift_outside_window'
  AND event_time >= strftime('%Y-%m-%d %H:%M:%f', 'now', '-60 minutes')
ORDER BY event_time DESC;
