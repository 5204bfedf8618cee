//! XEP-0199: XMPP Ping. T answers a ping with an empty result.

use super::{Services, result};
use minidom::Element;

/// The namespace of a ping.
pub const NS: &str = "urn:xmpp:ping";
/// What T announces for it.
pub const FEATURES: &[&str] = &[NS];

/// Answers a ping.
pub async fn pong(services: &Services, request: &Element) {
    services.send(result(request, None)).await;
}
