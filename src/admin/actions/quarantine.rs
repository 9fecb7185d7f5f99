//! Quarantine review: list what the output-safety stage withheld, show one result (the original
//! content included: the reviewer has to see it), release one (who and why are recorded). A
//! released result can then be fetched once by the principal whose call produced it; that is the
//! agent's side, not an admin action.

use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::{Act, Admin, AdminError, DEFAULT_LIST, Done, MAX_LIST, rfc3339};
use crate::pipeline::authenticate::Authenticated;
use crate::store::quarantine::{QStatus, QuarantineError, QuarantineItem, QuarantineRefusal};

/// A quarantined result as the admin faces show it (times RFC 3339).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuarantineView {
    /// Its id (`q_…`).
    pub id: String,
    /// `held`, `released` or `fetched`.
    pub status: String,
    /// The principal whose call produced it.
    pub principal: String,
    /// The upstream.
    pub server: String,
    /// The exposed tool name.
    pub tool: String,
    /// The id of the call (as in its audit row).
    pub request_id: String,
    /// The finding kinds that caused it.
    pub classes: Vec<String>,
    /// When it was withheld.
    pub created_at: String,
    /// Who released it.
    pub released_by: Option<String>,
    /// When.
    pub released_at: Option<String>,
    /// Why.
    pub release_reason: Option<String>,
    /// When its principal fetched it.
    pub fetched_at: Option<String>,
    /// The original result (only when one result is shown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<Value>,
}

impl QuarantineView {
    /// `q` without its content.
    pub fn new(q: &QuarantineItem) -> Self {
        Self {
            id: q.id.clone(),
            status: q.status.as_str().to_owned(),
            principal: q.principal.clone(),
            server: q.server.clone(),
            tool: q.tool.clone(),
            request_id: q.request_id.clone(),
            classes: q.classes.clone(),
            created_at: rfc3339(q.created_at),
            released_by: q.released_by.clone(),
            released_at: q.released_at.map(rfc3339),
            release_reason: q.release_reason.clone(),
            fetched_at: q.fetched_at.map(rfc3339),
            content: None,
        }
    }

    /// One line for people.
    pub fn line(&self) -> String {
        let classes = if self.classes.is_empty() {
            "-".to_owned()
        } else {
            self.classes.join(",")
        };
        let mut s = format!(
            "{}  {:<8}  {}  {}  call of {}  at {}  findings {classes}",
            self.id, self.status, self.server, self.tool, self.principal, self.created_at
        );
        if let Some(by) = &self.released_by {
            s.push_str(&format!("  released by {by}"));
        }
        if let Some(r) = &self.release_reason {
            s.push_str(&format!(" ({r})"));
        }
        if let Some(at) = &self.fetched_at {
            s.push_str(&format!("  fetched at {at}"));
        }
        s
    }
}

fn refused(id: &str, e: QuarantineError) -> AdminError {
    match e {
        QuarantineError::Refused(refusal) => AdminError::Quarantine {
            id: id.to_owned(),
            refusal,
        },
        QuarantineError::Store(e) => e.into(),
    }
}

impl Admin {
    /// List quarantined results, newest first, without their content.
    pub async fn quarantine_list(
        &self,
        who: &Authenticated,
        status: Option<QStatus>,
        limit: Option<u32>,
    ) -> Result<Done, AdminError> {
        let args = json!({"status": status.map(QStatus::as_str), "limit": limit});
        self.run(who, "quarantine_list", args, None, async {
            let limit = limit.unwrap_or(DEFAULT_LIST).clamp(1, MAX_LIST);
            let list: Vec<QuarantineView> = self
                .store
                .quarantine_list(status, limit)
                .await?
                .iter()
                .map(QuarantineView::new)
                .collect();
            let empty = status.map_or("no quarantined results".to_owned(), |s| {
                format!("no {s} quarantined results")
            });
            Ok(Done::listing("items", &list, QuarantineView::line, empty))
        })
        .await
    }

    /// Show one quarantined result, its original content included (untrusted: it was withheld
    /// because it may carry secrets, personal data or injected instructions).
    pub async fn quarantine_show(&self, who: &Authenticated, id: &str) -> Result<Done, AdminError> {
        let act = Act {
            quarantine_id: Some(id.to_owned()),
            ..Act::new(who, "quarantine_show", json!({ "id": id }))
        };
        self.run_act(act, async {
            let q = self
                .store
                .quarantine_get(id)
                .await?
                .ok_or_else(|| AdminError::Quarantine {
                    id: id.to_owned(),
                    refusal: QuarantineRefusal::Unknown,
                })?;
            let view = QuarantineView {
                content: Some(q.content.clone()),
                ..QuarantineView::new(&q)
            };
            let content =
                serde_json::to_string_pretty(&q.content).unwrap_or_else(|_| q.content.to_string());
            Ok(Done {
                text: format!(
                    "{}\n--- the withheld result (untrusted) ---\n{content}",
                    view.line()
                ),
                data: json!({ "item": view }),
            })
        })
        .await
    }

    /// Release held result `id` for `reason` (required): its principal may then fetch it
    /// once. The releaser must not be that principal.
    pub async fn quarantine_release(
        &self,
        who: &Authenticated,
        id: &str,
        reason: &str,
    ) -> Result<Done, AdminError> {
        let by = &who.principal().id;
        let act = Act {
            quarantine_id: Some(id.to_owned()),
            note: Some(format!("released: {reason}")),
            ..Act::new(
                who,
                "quarantine_release",
                json!({ "id": id, "reason": reason }),
            )
        };
        self.run_act(act, async {
            let q = self
                .store
                .quarantine_release(id, by, reason, OffsetDateTime::now_utc())
                .await
                .map_err(|e| refused(id, e))?;
            let view = QuarantineView::new(&q);
            Ok(Done {
                text: format!(
                    "released {id}: {} may now fetch the result of {} once",
                    view.principal, view.tool
                ),
                data: json!({ "item": view }),
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests;
