//! Policy scenarios: events in, expected actions out, in TOML, so a policy
//! can be tested offline (`pizzja policy test MODULE SCENARIO...`).
//!
//! ```toml
//! description = "docs/behaviour.md section 3: sessions follow local presence"
//! config = { initial_presence = "available" }   # [policy.config], optional
//!
//! [facts]                                # shared by every case
//! local_jid = "alice@example.org"
//! foreign_jid = "me@remote.net"
//! gateway = "gw.example.org"
//! controllers = ["Work/phone"]           # most recently active first;
//!                                        # they came online in this order
//! sessions = { Work = "online" }
//!
//! [[case]]
//! name = "the first controller of A opens the foreign session"
//! sessions = {}                          # a case may override any fact
//! event.local.stanza = "<presence from='alice@example.org/Work/phone' to='gw.example.org'/>"
//! expect = [{ open_session = "Work" }]
//! ```
//!
//! Events: `local = { stanza, sender_resource?, answers? }` (the sender's
//! resource defaults to the resource of `from`), `foreign = { session,
//! stanza, answers? }`, `session = { session, state, reason? }`; `answers`
//! is `{ requester, peer?, payload_ns? }`. Expected actions, in order:
//! `open_session`, `close_session`, `send_foreign = { session, to?,
//! xml_contains? }`, `send_local = { to_resource?, from_node?,
//! from_resource?, xml_contains? }`, `reply_error = { condition, type?,
//! text_contains? }`. Without `xml_contains` the content must be the
//! event's own stanza. Log actions are not compared.

use super::bindings as wit;
use super::{EngineOptions, PolicyEngine};
use crate::xmpp::{Kind, parse_stanza};
use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    #[serde(default)]
    config: BTreeMap<String, toml::Value>,
    #[serde(default)]
    facts: FactsSpec,
    #[serde(rename = "case")]
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct FactsSpec {
    local_jid: Option<String>,
    foreign_jid: Option<String>,
    gateway: Option<String>,
    controllers: Option<Vec<String>>,
    sessions: Option<BTreeMap<String, String>>,
}

/// One case. Its fact fields repeat [`FactsSpec`]'s on purpose: serde's
/// `flatten` cannot be combined with `deny_unknown_fields`, and catching a
/// misspelt key in a scenario file matters more than the repetition.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    event: EventSpec,
    expect: Vec<Expect>,
    local_jid: Option<String>,
    foreign_jid: Option<String>,
    gateway: Option<String>,
    controllers: Option<Vec<String>>,
    sessions: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum EventSpec {
    Local {
        stanza: String,
        sender_resource: Option<String>,
        answers: Option<AnswersSpec>,
    },
    Foreign {
        session: String,
        stanza: String,
        answers: Option<AnswersSpec>,
    },
    Session {
        session: String,
        state: String,
        reason: Option<String>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AnswersSpec {
    requester: String,
    peer: Option<String>,
    payload_ns: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum Expect {
    OpenSession(String),
    CloseSession(String),
    SendForeign {
        session: String,
        to: Option<String>,
        xml_contains: Option<String>,
    },
    SendLocal {
        to_resource: Option<String>,
        from_node: Option<String>,
        from_resource: Option<String>,
        xml_contains: Option<String>,
    },
    ReplyError {
        condition: String,
        #[serde(rename = "type")]
        type_: Option<String>,
        text_contains: Option<String>,
    },
}

/// The outcome of one scenario file.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Cases whose actions matched.
    pub passed: usize,
    /// One readable report per failed case.
    pub failures: Vec<String>,
}

/// Runs a scenario file against `module` (`builtin:default` or a path).
/// Blocking; not for use inside a tokio runtime.
pub fn run_file(module: &str, path: &Path, cache_dir: Option<&Path>) -> Result<Outcome> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read scenario `{}`", path.display()))?;
    let file: ScenarioFile =
        toml::from_str(&text).with_context(|| format!("invalid scenario `{}`", path.display()))?;
    let config = file
        .config
        .into_iter()
        .map(|(k, v)| {
            (
                k,
                if let toml::Value::String(s) = v {
                    s
                } else {
                    v.to_string()
                },
            )
        })
        .collect();
    let source = match module {
        "builtin:default" => crate::config::PolicySource::BuiltinDefault,
        other => crate::config::PolicySource::File(other.into()),
    };
    let (name, bytes) = super::module_bytes(&source)?;
    let limits = super::Limits {
        deadline: std::time::Duration::from_millis(500),
        memory: 64 << 20,
    };
    let engine = PolicyEngine::new(
        &name,
        &bytes,
        config,
        EngineOptions {
            cache_dir: cache_dir.map(Path::to_path_buf),
            ..EngineOptions::with_limits(limits)
        },
    )?;
    let mut outcome = Outcome::default();
    for case in &file.cases {
        match run_case(&engine, &file.facts, case) {
            Ok(None) => outcome.passed += 1,
            Ok(Some(report)) => {
                outcome
                    .failures
                    .push(format!("{}: {}\n{report}", path.display(), case.name))
            }
            Err(e) => outcome
                .failures
                .push(format!("{}: {}\n  {e:#}", path.display(), case.name)),
        }
    }
    Ok(outcome)
}

fn run_case(engine: &PolicyEngine, shared: &FactsSpec, case: &Case) -> Result<Option<String>> {
    let facts = facts(shared, case)?;
    let event = event(&case.event)?;
    let actions = engine
        .decide(&event, &facts)
        .map_err(|e| anyhow!("the policy failed: {e}"))?;
    let actual: Vec<&wit::Action> = actions
        .iter()
        .filter(|a| !matches!(a, wit::Action::Log(_)))
        .collect();
    let matches = actual.len() == case.expect.len()
        && actual.iter().zip(&case.expect).all(|(a, e)| fits(a, e));
    if matches {
        return Ok(None);
    }
    let mut report = String::from("  expected:\n");
    for e in &case.expect {
        let _ = writeln!(report, "    {e:?}");
    }
    if case.expect.is_empty() {
        report.push_str("    (no actions)\n");
    }
    report.push_str("  got:\n");
    for a in &actual {
        let _ = writeln!(report, "    {}", describe(a));
    }
    if actual.is_empty() {
        report.push_str("    (no actions)\n");
    }
    Ok(Some(report))
}

fn fits(action: &wit::Action, expect: &Expect) -> bool {
    let content_fits = |content: &wit::Content, contains: &Option<String>| match (content, contains)
    {
        (wit::Content::Original, None) => true,
        (wit::Content::Xml(x), Some(c)) => x.contains(c.as_str()),
        _ => false,
    };
    match (action, expect) {
        (wit::Action::OpenSession(a), Expect::OpenSession(e)) => a == e,
        (wit::Action::CloseSession(a), Expect::CloseSession(e)) => a == e,
        (
            wit::Action::SendForeign(a),
            Expect::SendForeign {
                session,
                to,
                xml_contains,
            },
        ) => &a.session == session && &a.to == to && content_fits(&a.content, xml_contains),
        (
            wit::Action::SendLocal(a),
            Expect::SendLocal {
                to_resource,
                from_node,
                from_resource,
                xml_contains,
            },
        ) => {
            &a.to_resource == to_resource
                && &a.from_node == from_node
                && &a.from_resource == from_resource
                && content_fits(&a.content, xml_contains)
        }
        (
            wit::Action::ReplyError(a),
            Expect::ReplyError {
                condition,
                type_,
                text_contains,
            },
        ) => {
            &a.condition == condition
                && type_.as_deref().is_none_or(|t| a.type_.as_str() == t)
                && text_contains
                    .as_deref()
                    .is_none_or(|t| a.text.as_deref().is_some_and(|x| x.contains(t)))
        }
        _ => false,
    }
}

fn describe(action: &wit::Action) -> String {
    let content = |c: &wit::Content| match c {
        wit::Content::Original => "original".to_string(),
        wit::Content::Xml(x) => format!("xml {x:?}"),
    };
    match action {
        wit::Action::OpenSession(a) => format!("open_session {a:?}"),
        wit::Action::CloseSession(a) => format!("close_session {a:?}"),
        wit::Action::SendForeign(s) => {
            format!(
                "send_foreign {{ session: {:?}, to: {:?}, content: {} }}",
                s.session,
                s.to,
                content(&s.content)
            )
        }
        wit::Action::SendLocal(s) => format!(
            "send_local {{ to_resource: {:?}, from_node: {:?}, from_resource: {:?}, content: {} }}",
            s.to_resource,
            s.from_node,
            s.from_resource,
            content(&s.content)
        ),
        wit::Action::ReplyError(e) => {
            format!(
                "reply_error {{ condition: {:?}, type: {:?}, text: {:?} }}",
                e.condition,
                e.type_.as_str(),
                e.text
            )
        }
        wit::Action::Log(l) => format!("log {:?}", l.message),
    }
}

fn state(name: &str) -> Result<wit::SessionState> {
    Ok(match name {
        "connecting" => wit::SessionState::Connecting,
        "online" => wit::SessionState::Online,
        "reconnecting" => wit::SessionState::Reconnecting,
        "failed" => wit::SessionState::Failed,
        "closed" => wit::SessionState::Closed,
        other => bail!(
            "unknown session state `{other}` (connecting, online, reconnecting, failed, closed)"
        ),
    })
}

fn facts(shared: &FactsSpec, case: &Case) -> Result<wit::Facts> {
    let pick = |own: &Option<String>, common: &Option<String>, default: &str| {
        own.clone()
            .or_else(|| common.clone())
            .unwrap_or_else(|| default.to_string())
    };
    let controllers = case
        .controllers
        .clone()
        .or_else(|| shared.controllers.clone())
        .unwrap_or_default();
    let sessions = case
        .sessions
        .clone()
        .or_else(|| shared.sessions.clone())
        .unwrap_or_default();
    let now = 1_000_000;
    Ok(wit::Facts {
        local_jid: pick(&case.local_jid, &shared.local_jid, "alice@example.org"),
        foreign_jid: pick(&case.foreign_jid, &shared.foreign_jid, "me@remote.net"),
        gateway: pick(&case.gateway, &shared.gateway, "gw.example.org"),
        controllers: controllers
            .iter()
            .enumerate()
            .map(|(i, r)| wit::Controller {
                resource: r.clone(),
                show: None,
                status: None,
                priority: 0,
                online_since_ms: i as u64,
                last_active_ms: now - i as u64,
            })
            .collect(),
        sessions: sessions
            .iter()
            .map(|(r, s)| {
                Ok(wit::Session {
                    resource: r.clone(),
                    state: state(s)?,
                })
            })
            .collect::<Result<_>>()?,
        now_ms: now,
    })
}

fn stanza(xml: &str) -> Result<wit::Stanza> {
    let el = parse_stanza(xml).map_err(|e| anyhow!("bad stanza {xml:?}: {e}"))?;
    let kind = Kind::of(&el).ok_or_else(|| anyhow!("not a stanza: {xml:?}"))?;
    Ok(wit::Stanza::of(kind, &el))
}

fn answers(a: &Option<AnswersSpec>) -> Option<wit::IqRequest> {
    a.as_ref().map(|a| wit::IqRequest {
        requester: a.requester.clone(),
        peer: a.peer.clone(),
        payload_ns: a.payload_ns.clone(),
    })
}

fn event(spec: &EventSpec) -> Result<wit::Event> {
    Ok(match spec {
        EventSpec::Local {
            stanza: xml,
            sender_resource,
            answers: a,
        } => {
            let stanza = stanza(xml)?;
            let from_resource = stanza
                .from
                .as_deref()
                .and_then(|f| f.split_once('/'))
                .map(|(_, r)| r.to_string());
            wit::Event::Local(wit::LocalStanza {
                sender_resource: sender_resource.clone().or(from_resource),
                stanza,
                answers: answers(a),
            })
        }
        EventSpec::Foreign {
            session,
            stanza: xml,
            answers: a,
        } => wit::Event::Foreign(wit::ForeignStanza {
            session: session.clone(),
            stanza: stanza(xml)?,
            answers: answers(a),
        }),
        EventSpec::Session {
            session,
            state: s,
            reason,
        } => wit::Event::Session(wit::SessionChange {
            session: session.clone(),
            state: state(s)?,
            reason: reason.clone(),
        }),
    })
}
