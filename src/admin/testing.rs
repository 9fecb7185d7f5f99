//! A deployment for the admin surface's tests: a registry with the notes upstream, principals
//! with each combination of labels, a fresh store, and the nudge the actions ring.

use std::sync::Arc;

use tokio::sync::Notify;

use super::Admin;
use crate::config::Config;
use crate::pipeline::authenticate::{Authenticated, Principals};
use crate::store::Store;

const NOTES: &str = r#"command = ["mcp-warden", "fixture", "notes"]
prefix = "notes"
audience = "https://notes.internal"
"#;

const CONFIG: &str = r#"registry_dir = "registry"
store = "sqlite://warden.db"
cli_principal = "operator"

[[principals]]
id = "local"
scopes = ["*:*"]

[[principals]]
id = "operator"
labels = ["approver", "admin"]

[[principals]]
id = "bob"
labels = ["approver"]

[[principals]]
id = "carol"
labels = ["admin"]

[[principals]]
id = "alice"
labels = ["read_only"]
scopes = ["notes:read"]
"#;

/// One deployment; the folder lives as long as it does.
pub struct Deployment {
    /// The deployment folder.
    pub dir: tempfile::TempDir,
    /// The admin surface over its store.
    pub admin: Arc<Admin>,
    /// Rung after every state change.
    pub nudge: Arc<Notify>,
    principals: Principals,
}

impl Deployment {
    /// Set it up.
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("registry")).unwrap();
        std::fs::write(dir.path().join("registry/notes.toml"), NOTES).unwrap();
        std::fs::write(dir.path().join("warden.toml"), CONFIG).unwrap();
        let config = Config::load(Some(&dir.path().join("warden.toml"))).unwrap();
        let store = Store::connect(&config.store).await.unwrap();
        let principals = Principals::from_config(&config);
        let nudge = Arc::new(Notify::new());
        let admin = Arc::new(Admin::new(config, store, Some(nudge.clone())));
        Self {
            dir,
            admin,
            nudge,
            principals,
        }
    }

    /// The configured principal `id`.
    pub fn who(&self, id: &str) -> Authenticated {
        self.principals.get(id).unwrap()
    }

    /// Authenticates a request by its `x-principal` header (tests only; no keys involved).
    pub fn authn(&self) -> super::mcp::Authn {
        let principals = Arc::new(Principals::from_config(
            &Config::load(Some(&self.dir.path().join("warden.toml"))).unwrap(),
        ));
        Arc::new(move |headers: &http::HeaderMap| {
            let id = headers
                .get("x-principal")
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| "no x-principal header".to_owned())?;
            principals.get(id).map_err(|e| e.to_string())
        })
    }

    /// Every admin audit row: (actor, exposed name, decision, reason code, approval id).
    pub async fn audit(&self) -> Vec<(String, String, String, String, Option<String>)> {
        let path = self.dir.path().join("warden.db");
        let options = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
        let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect_with(&options)
            .await
            .unwrap();
        let rows: Vec<(String, String, String, String, Option<String>)> = sqlx::query_as(
            "SELECT actor_id, exposed_name, decision, reason, approval_id FROM mcp_audit \
             WHERE stage = 'admin' AND action_class = 'admin' AND server_name = 'mcp-warden' \
             ORDER BY id",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        rows.into_iter()
            .map(|(a, e, d, r, id)| {
                let code = r.split(':').next().unwrap_or_default().to_owned();
                (a, e, d, code, id)
            })
            .collect()
    }

    /// A result of `principal`'s call to crm__lookup, withheld for an AWS key and an e-mail
    /// address.
    pub async fn quarantined(&self, principal: &str) -> String {
        let new = crate::store::quarantine::NewQuarantine {
            principal: principal.to_owned(),
            server: "crm".to_owned(),
            tool: "crm__lookup".to_owned(),
            request_id: "42".to_owned(),
            classes: vec!["aws_access_key".to_owned(), "email".to_owned()],
            content: serde_json::json!({
                "content": [{"type": "text", "text": "AKIAEXAMPLEEXAMPLE12 for jane@example.com"}]
            }),
        };
        self.admin
            .store()
            .quarantine_put(&new, time::OffsetDateTime::now_utc())
            .await
            .unwrap()
            .id
    }

    /// A pending approval asked for by `principal`.
    pub async fn pending(&self, principal: &str) -> String {
        let binding = crate::decide::approval::Binding {
            principal: principal.to_owned(),
            ..crate::decide::approval::sample_binding()
        };
        self.admin
            .store()
            .create_approval(
                binding,
                time::OffsetDateTime::now_utc(),
                std::time::Duration::from_secs(3600),
            )
            .await
            .unwrap()
            .id
    }
}
