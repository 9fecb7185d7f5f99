//! What an upstream offers: its tools, resources, resource templates and prompts, read live.

use std::sync::Arc;

use rmcp::model::{Implementation, JsonObject, Prompt, Resource, ResourceTemplate, Tool};
use rmcp::service::{Peer, RoleClient, ServiceError};

/// One upstream's live manifest.
#[derive(Debug, Clone, Default)]
pub struct Manifest {
    /// Its tools, schemas normalised.
    pub tools: Vec<Tool>,
    /// Its resources.
    pub resources: Vec<Resource>,
    /// Its resource templates.
    pub templates: Vec<ResourceTemplate>,
    /// Its prompts.
    pub prompts: Vec<Prompt>,
    /// Its `serverInfo`.
    pub server_info: Option<Implementation>,
    /// The protocol version the connection negotiated.
    pub protocol_version: Option<String>,
}

/// Which capability lists the upstream advertises (only those are read).
#[derive(Debug, Clone, Copy, Default)]
pub struct Offered {
    pub tools: bool,
    pub resources: bool,
    pub prompts: bool,
}

/// Read the whole manifest, following pagination.
pub async fn fetch(peer: &Peer<RoleClient>, offered: Offered) -> Result<Manifest, ServiceError> {
    let mut m = Manifest::default();
    if offered.tools {
        m.tools = peer.list_all_tools().await?;
        for tool in &mut m.tools {
            normalise_tool(tool);
        }
    }
    if offered.resources {
        m.resources = peer.list_all_resources().await?;
        // Templates are optional even for servers with resources.
        m.templates = peer.list_all_resource_templates().await.unwrap_or_default();
    }
    if offered.prompts {
        m.prompts = peer.list_all_prompts().await?;
    }
    Ok(m)
}

/// Some servers send `inputSchema: {}`; clients reject a tool list where any schema lacks
/// `"type": "object"`. Input and output schemas are objects by definition, so say so.
pub fn normalise_tool(tool: &mut Tool) {
    tool.input_schema = normalise_schema(&tool.input_schema);
    if let Some(out) = &tool.output_schema {
        tool.output_schema = Some(normalise_schema(out));
    }
}

fn normalise_schema(schema: &Arc<JsonObject>) -> Arc<JsonObject> {
    if schema.get("type").and_then(|t| t.as_str()) == Some("object") {
        return schema.clone();
    }
    let mut s = JsonObject::clone(schema);
    s.insert(
        "type".to_owned(),
        serde_json::Value::String("object".to_owned()),
    );
    Arc::new(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_become_objects() {
        let mut t = Tool::new("t", "d", Arc::new(JsonObject::new()));
        normalise_tool(&mut t);
        assert_eq!(
            t.input_schema.get("type").and_then(|v| v.as_str()),
            Some("object")
        );
        let mut props = JsonObject::new();
        props.insert("type".into(), "object".into());
        props.insert(
            "properties".into(),
            serde_json::json!({"a": {"type": "string"}}),
        );
        let mut t = Tool::new("t", "d", Arc::new(props.clone()));
        normalise_tool(&mut t);
        assert_eq!(*t.input_schema, props);
    }
}
