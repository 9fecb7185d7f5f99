//! Trust at both ends of the gateway. Inbound: agents' bearer JWTs from trusted issuers
//! (`inbound`), besides the API keys of `pipeline::authenticate`. Outbound: the credential each
//! upstream gets, issued for its audience alone (`credentials`), the gateway's signing keys
//! (`keys`) and the HTTP client that puts the credential on the wire (`transport`). The agent's
//! own token never reaches an upstream: nothing here reads the agent's request.

#[cfg(test)]
mod bench;
pub mod credentials;
pub mod inbound;
pub mod keys;
pub mod transport;
