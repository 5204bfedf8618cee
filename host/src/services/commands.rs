//! XEP-0050: Ad-Hoc Commands. One-stage commands whose answer is a note:
//! for a user, the state of their sessions; for `[component] admins`,
//! reloading the policy, every account's sessions and the gateway's
//! counters.

use super::{Accounts, Services, result};
use crate::account::{Handle, Input};
use crate::policy::{PolicyEvent, reload};
use crate::xmpp::ncname;
use jid::BareJid;
use minidom::Element;
use std::sync::Arc;
use tracing::info;
use xmpp_parsers::disco::{DiscoInfoResult, Identity};

/// The namespace of ad-hoc commands.
pub const NS: &str = "http://jabber.org/protocol/commands";
/// What T announces for it.
pub const FEATURES: &[&str] = &[NS];

/// The commands: (node, name, admins only).
const COMMANDS: &[(&str, &str, bool)] = &[
    ("sessions", "Show my foreign sessions", false),
    ("reload-policy", "Reload the policy module", true),
    ("list-sessions", "List all accounts and sessions", true),
    ("stats", "Show the gateway's counters", true),
];

/// The commands a user may run: (node, name).
pub fn available(admin: bool) -> impl Iterator<Item = (&'static str, &'static str)> {
    COMMANDS
        .iter()
        .filter(move |(_, _, admins_only)| admin || !admins_only)
        .map(|(node, name, _)| (*node, *name))
}

/// XEP-0050 section 2.3: what a command node is, for whoever may run it.
pub fn info(node: &str, admin: bool) -> Option<DiscoInfoResult> {
    let (node, name) = available(admin).find(|(n, _)| *n == node)?;
    Some(DiscoInfoResult {
        node: Some(node.into()),
        identities: vec![Identity::new("automation", "command-node", "en", name)],
        features: [NS, "jabber:x:data"].map(str::to_string).into(),
        extensions: Vec::new(),
    })
}

/// Executes a one-stage command; the answer is a completed command with a
/// note. Runs off the router's path: it waits for account tasks or a
/// reload.
pub async fn execute(
    services: &Arc<Services>,
    request: Element,
    local: BareJid,
    accounts: &Accounts,
) {
    let Some(cmd) = request.get_child("command", NS) else {
        return;
    };
    let node = cmd.attr("node").unwrap_or("").to_string();
    if cmd
        .attr("action")
        .is_some_and(|a| a != "execute" && a != "complete")
    {
        let text = "these commands have one stage";
        return services
            .reply_error(&request, "modify", "bad-request", text)
            .await;
    }
    if !available(services.is_admin(&local)).any(|(n, _)| n == node) {
        let (condition, text) = if COMMANDS.iter().any(|(n, _, _)| *n == node) {
            ("forbidden", "admins only")
        } else {
            ("item-not-found", "no such command")
        };
        return services
            .reply_error(&request, "cancel", condition, text)
            .await;
    }
    let scope: Vec<(BareJid, Handle)> = match node.as_str() {
        "sessions" => accounts
            .get(&local)
            .map(|tx| (local.clone(), tx.clone()))
            .into_iter()
            .collect(),
        "list-sessions" => accounts
            .iter()
            .map(|(l, tx)| (l.clone(), tx.clone()))
            .collect(),
        _ => Vec::new(),
    };
    let services = services.clone();
    let running = accounts.len();
    tokio::spawn(async move {
        let (kind, note) = match node.as_str() {
            "reload-policy" => reload_for(&services, &local).await,
            "stats" => ("info", stats(&services, running)),
            _ => ("info", status_of(scope).await),
        };
        let command = Element::builder("command", NS)
            .attr(ncname("node"), node.as_str())
            .attr(ncname("status"), "completed")
            .attr(ncname("sessionid"), request.attr("id").unwrap_or("s"))
            .append(
                Element::builder("note", NS)
                    .attr(ncname("type"), kind)
                    .append(note)
                    .build(),
            )
            .build();
        services.send(result(&request, Some(command))).await;
    });
}

/// Asks the reload task, and says how it went, for the admin who asked.
async fn reload_for(services: &Services, admin: &BareJid) -> (&'static str, String) {
    let (reply, outcome) = tokio::sync::oneshot::channel();
    let request = reload::Request {
        origin: "admin command",
        reply: Some(reply),
    };
    if services.reloads.send(request).await.is_err() {
        return ("error", "the reload task is gone".into());
    }
    info!(%admin, "policy reload requested by an admin");
    match outcome.await {
        Ok(Ok(PolicyEvent::Loaded { name, hash })) => {
            ("info", format!("policy {name} loaded (sha1 {hash})"))
        }
        Ok(Ok(PolicyEvent::Unchanged { hash })) => (
            "info",
            format!("policy unchanged (sha1 {hash}); nothing to do"),
        ),
        Ok(Ok(other)) => ("info", format!("{other:?}")),
        Ok(Err(error)) => (
            "error",
            format!("policy refused; the running one stays: {error}"),
        ),
        Err(_) => ("error", "the reload task did not answer".into()),
    }
}

/// Each account's status, from its task.
async fn status_of(accounts: Vec<(BareJid, Handle)>) -> String {
    let mut lines = Vec::new();
    for (local, tx) in accounts {
        let (reply, answer) = tokio::sync::oneshot::channel();
        if tx.tell(Input::Status(reply))
            && let Ok(status) = answer.await
        {
            lines.push(status);
        } else {
            lines.push(format!("{local}: stopped"));
        }
    }
    if lines.is_empty() {
        "no foreign sessions".to_string()
    } else {
        lines.join("\n")
    }
}

/// The `stats` command's note: one `name: value` per line, so that people
/// and scripts (the benchmark suite) can both read it.
fn stats(services: &Services, accounts_running: usize) -> String {
    let policy = services.engine.stats();
    let registered = services.storage.count().unwrap_or(0);
    let (derived, reused) = services.dialer.scram.read();
    format!(
        "registered: {registered}\naccounts-running: {accounts_running}\nlogins-in-flight: {}\nscram-keys-derived: {derived}\nscram-keys-reused: {reused}\npolicy-decisions: {}\npolicy-cpu-us: {}\noverload-refused: {}",
        services.dialer.logins_in_flight(),
        policy.decisions,
        policy.cpu_ns / 1000,
        services.overload.load(std::sync::atomic::Ordering::Relaxed),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_see_their_command_and_admins_see_all() {
        let user: Vec<_> = available(false).map(|(n, _)| n).collect();
        assert_eq!(user, ["sessions"]);
        let admin: Vec<_> = available(true).map(|(n, _)| n).collect();
        assert_eq!(
            admin,
            ["sessions", "reload-policy", "list-sessions", "stats"]
        );
    }

    #[test]
    fn each_command_node_answers_disco_info_for_who_may_run_it() {
        let el: Element = info("sessions", false).expect("a user's command").into();
        let identity = el
            .get_child("identity", super::super::disco::NS_INFO)
            .expect("identity");
        assert_eq!(
            (identity.attr("category"), identity.attr("type")),
            (Some("automation"), Some("command-node"))
        );
        assert_eq!(el.attr("node"), Some("sessions"));
        assert!(info("stats", false).is_none(), "admins only");
        assert!(info("stats", true).is_some());
        assert!(info("nope", true).is_none());
    }
}
