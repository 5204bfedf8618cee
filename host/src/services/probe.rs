//! Start-up probes (docs/behaviour.md section 2): on start, and after the
//! link to the local server comes back, T sends a presence probe to every
//! registered user, so that sessions come back for controllers already
//! online.

use super::Services;
use crate::xmpp::presence;
use std::sync::Arc;
use tracing::{info, warn};

/// Probes every registered user, from a task of its own: the router must
/// keep reading what the link receives meanwhile (the answers), or with
/// thousands of users both queues fill and the link and the router wait on
/// each other for ever. The probe window stays open until a little after
/// the last probe, while the answers come in.
pub fn probe_registered(services: &Arc<Services>) {
    let services = services.clone();
    services.probes.open_from_now();
    tokio::spawn(async move {
        let locals = match services.storage.locals() {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %e, "could not list registrations to probe");
                return;
            }
        };
        info!(count = locals.len(), "probing registered users");
        for local in locals {
            let probe = presence(&services.gateway, local.as_str(), Some("probe"));
            if services.to_local.send(probe).await.is_err() {
                return;
            }
        }
        services.probes.open_from_now();
    });
}
