//! The HTTP client of an upstream connection that carries the gateway's credential. A
//! `tools/call` brings its per-call credential in `_meta["io.mcp-warden/credential"]` (put there
//! by the pipeline's credential stage); it is taken out of the message and sent as
//! `Authorization: Bearer`. Every other request (handshake, lists, streams) carries the
//! gateway's own service credential. Nothing of the agent's request headers is ever here.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use futures::stream::BoxStream;
use http::{HeaderName, HeaderValue};
use rmcp::model::{ClientJsonRpcMessage, GetMeta as _};
use rmcp::transport::streamable_http_client::{
    StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
};
use sse_stream::{Error as SseError, Sse};

use super::credentials::{Credentials, META_KEY};
use crate::upstream::registry::{ActionClass, UpstreamSpec};

/// reqwest, plus the credential of each request.
#[derive(Clone)]
pub struct CredentialClient {
    inner: reqwest::Client,
    credentials: Arc<Credentials>,
    spec: Arc<UpstreamSpec>,
    index: usize,
}

impl CredentialClient {
    /// For upstream `index`.
    pub fn new(
        inner: reqwest::Client,
        credentials: Arc<Credentials>,
        spec: Arc<UpstreamSpec>,
        index: usize,
    ) -> Self {
        Self {
            inner,
            credentials,
            spec,
            index,
        }
    }

    /// The gateway's own credential for this upstream.
    async fn service(&self) -> Result<Option<String>, StreamableHttpError<reqwest::Error>> {
        self.credentials
            .for_upstream(self.index, &self.spec, None, ActionClass::Read)
            .await
            .map(|t| t.map(|t| t.to_string()))
            .map_err(|e| {
                StreamableHttpError::UnexpectedServerResponse(Cow::Owned(format!(
                    "mcp-warden: no credential for upstream `{}`: {e}",
                    self.spec.name
                )))
            })
    }
}

impl CredentialClient {
    /// The bearer of a message: its per-call credential (taken out of `_meta`), else the
    /// gateway's own.
    async fn bearer_for(
        &self,
        message: &mut ClientJsonRpcMessage,
        auth_header: Option<String>,
    ) -> Result<Option<String>, StreamableHttpError<reqwest::Error>> {
        match take_credential(message) {
            Some(t) => Ok(Some(t)),
            None => Ok(self.service().await?.or(auth_header)),
        }
    }
}

/// Take the per-call credential out of a request's `_meta`.
fn take_credential(message: &mut ClientJsonRpcMessage) -> Option<String> {
    let ClientJsonRpcMessage::Request(request) = message else {
        return None;
    };
    match request.request.get_meta_mut().remove(META_KEY)? {
        serde_json::Value::String(s) => Some(s),
        _ => None,
    }
}

impl StreamableHttpClient for CredentialClient {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        mut message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        let token = self.bearer_for(&mut message, auth_header).await?;
        self.inner
            .post_message(uri, message, session_id, token, custom_headers)
            .await
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        mut message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        let token = self.bearer_for(&mut message, auth_header).await?;
        self.inner
            .post_message_with_max_sse_event_size(
                uri,
                message,
                session_id,
                token,
                custom_headers,
                max_sse_event_size,
            )
            .await
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), StreamableHttpError<Self::Error>> {
        let token = self.service().await?.or(auth_header);
        self.inner
            .delete_session(uri, session_id, token, custom_headers)
            .await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, StreamableHttpError<Self::Error>> {
        let token = self.service().await?.or(auth_header);
        self.inner
            .get_stream(uri, session_id, last_event_id, token, custom_headers)
            .await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, StreamableHttpError<Self::Error>> {
        let token = self.service().await?.or(auth_header);
        self.inner
            .get_stream_with_max_sse_event_size(
                uri,
                session_id,
                last_event_id,
                token,
                custom_headers,
                max_sse_event_size,
            )
            .await
    }
}
