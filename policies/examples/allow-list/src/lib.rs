//! Allow-list: the default policy, limited to the foreign contacts and
//! domains the operator lists (see README.md).

use pizzja_policy_default::DefaultPolicy;
use pizzja_sdk::{Action, Config, ErrorType, Event, Facts, JidParts, Policy, unescape};

/// The default policy behind an allow-list.
pub struct AllowList {
    inner: DefaultPolicy,
    everyone: Vec<String>,
    per_account: Vec<(String, Vec<String>)>,
}

fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(|s| s.trim().to_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

impl AllowList {
    /// May this account exchange stanzas with `jid`? Its own account and
    /// server always may (roster pushes, disco of the server).
    fn allowed(&self, facts: &Facts, jid: &JidParts) -> bool {
        let bare = jid.bare().to_lowercase();
        let domain = jid.domain.to_lowercase();
        let own = facts.foreign_jid.to_lowercase();
        if bare == own || own.ends_with(&format!("@{domain}")) && jid.node.is_none() {
            return true;
        }
        let mine = self
            .per_account
            .iter()
            .filter(|(l, _)| l.eq_ignore_ascii_case(&facts.local_jid));
        self.everyone
            .iter()
            .chain(mine.flat_map(|(_, l)| l))
            .any(|a| *a == bare || *a == domain)
    }
}

impl Policy for AllowList {
    fn new(config: &Config) -> Result<Self, String> {
        let inner = DefaultPolicy::new(config)?;
        let everyone = list(config.get("allow").unwrap_or_default());
        let mut per_account = Vec::new();
        for (key, value) in config.pairs() {
            if let Some(local) = key.strip_prefix("allow:") {
                per_account.push((local.to_string(), list(value)));
            }
        }
        Ok(AllowList {
            inner,
            everyone,
            per_account,
        })
    }

    fn decide(&mut self, event: &Event, facts: &Facts) -> Vec<Action> {
        match event {
            Event::Foreign(f) => {
                let sender = f.stanza.from_parts();
                if sender.is_some_and(|j| !self.allowed(facts, &j)) {
                    return vec![Action::debug(
                        "dropped a stanza from a contact not on the allow-list",
                    )];
                }
            }
            Event::Local(l) => {
                let target = l.stanza.to_parts().and_then(|to| to.node.map(unescape));
                if let Some(target) = target
                    && let Some(jid) = JidParts::parse(&target)
                    && !self.allowed(facts, &jid)
                {
                    return vec![Action::reply_error(
                        ErrorType::Cancel,
                        "not-allowed",
                        format!("{} is not on this gateway's allow-list", jid.bare()),
                    )];
                }
            }
            Event::Session(_) => {}
        }
        self.inner.decide(event, facts)
    }
}

pizzja_sdk::export_policy!(AllowList);

#[cfg(test)]
mod tests {
    use super::*;
    use pizzja_sdk::{ForeignStanza, LocalStanza, Stanza, StanzaKind};

    fn facts() -> Facts {
        Facts {
            local_jid: "alice@example.org".into(),
            foreign_jid: "me@remote.net".into(),
            gateway: "gw.example.org".into(),
            controllers: vec![],
            sessions: vec![],
            now_ms: 0,
        }
    }

    fn policy() -> AllowList {
        let config = Config::from_pairs(vec![
            ("allow".into(), "bob@remote.net, support.example".into()),
            ("allow:alice@example.org".into(), "carol@remote.net".into()),
        ]);
        AllowList::new(&config).expect("valid")
    }

    fn from(jid: &str) -> Event {
        Event::Foreign(ForeignStanza {
            session: "Work".into(),
            stanza: Stanza {
                kind: StanzaKind::Message,
                type_: "chat".into(),
                id: None,
                from: Some(jid.into()),
                to: None,
                xml: String::new(),
            },
            answers: None,
        })
    }

    fn dropped(actions: &[Action]) -> bool {
        actions.iter().all(|a| matches!(a, Action::Log(_)))
    }

    #[test]
    fn listed_contacts_domains_and_the_own_account_get_through() {
        let f = facts();
        let p = policy();
        for jid in [
            "bob@remote.net/pc",
            "anyone@support.example",
            "carol@remote.net",
            "me@remote.net/Home",
            "remote.net",
        ] {
            assert!(p.allowed(&f, &JidParts::parse(jid).expect("jid")), "{jid}");
        }
    }

    #[test]
    fn stanzas_from_unlisted_contacts_are_dropped() {
        let mut p = policy();
        assert!(dropped(&p.decide(&from("mallory@remote.net/x"), &facts())));
    }

    #[test]
    fn stanzas_to_unlisted_contacts_are_refused() {
        let mut p = policy();
        let event = Event::Local(LocalStanza {
            stanza: Stanza {
                kind: StanzaKind::Message,
                type_: "chat".into(),
                id: None,
                from: Some("alice@example.org/Work/phone".into()),
                to: Some(r"mallory\40remote.net@gw.example.org".into()),
                xml: String::new(),
            },
            sender_resource: Some("Work/phone".into()),
            answers: None,
        });
        match p.decide(&event, &facts()).as_slice() {
            [Action::ReplyError(e)] => assert_eq!(e.condition, "not-allowed"),
            other => panic!("expected not-allowed, got {other:?}"),
        }
    }
}
