-- Gate "registry drift" (target 0 unknown servers; page: any; Platform Security).
-- Upstreams connected without a valid lock, or whose fingerprint changed, in the last hour.
SELECT upstream, COUNT(*) AS events, MIN(event_time) AS first_seen, MAX(event_time) AS last_seen
FROM gate_events
WHERE gate = 'registry_drift' AND event_time >= strftime('%Y-%m-%d %H:%M:%f', 'now', '-60 minutes')
GROUP BY upstream
ORDER BY last_seen DESC;
