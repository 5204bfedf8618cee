//! The operator's TOML configuration (docs/configuration.md): parsed into
//! [`RawConfig`], then validated into [`Config`] with every name checked.

use anyhow::{Context, Result, anyhow, bail};
use jid::BareJid;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A secret that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    component: RawComponent,
    #[serde(default)]
    storage: RawStorage,
    #[serde(default)]
    policy: RawPolicy,
    #[serde(default)]
    foreign: RawForeign,
    #[serde(default)]
    runtime: RawRuntime,
    #[serde(default)]
    metrics: RawMetrics,
    #[serde(default)]
    log: RawLog,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLog {
    format: Option<String>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// For people: one line each, with colours on a terminal.
    Text,
    /// One JSON object a line (journald, Loki, any aggregator).
    Json,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRuntime {
    threads: Option<usize>,
    account_queue: Option<usize>,
    held_limit: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComponent {
    jid: String,
    server: String,
    secret: Secret,
    local_domains: Option<Vec<String>>,
    #[serde(default)]
    admins: Vec<String>,
    grace_secs: Option<u64>,
    queue_limit: Option<usize>,
    inbound_queue: Option<usize>,
    unconfirmed_limit: Option<usize>,
    confirm_secs: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    database: Option<PathBuf>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    module: Option<String>,
    #[serde(default)]
    watch: bool,
    #[serde(default)]
    config: toml::Table,
    decision_timeout_ms: Option<u64>,
    memory_limit_mb: Option<u64>,
    cache_dir: Option<PathBuf>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawForeign {
    tls: Option<String>,
    ca_file: Option<PathBuf>,
    #[serde(default)]
    hosts: BTreeMap<String, String>,
    login_timeout_secs: Option<u64>,
    iq_timeout_secs: Option<u64>,
    queue_limit: Option<usize>,
    max_concurrent_logins: Option<usize>,
}

/// Where the policy module comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    /// The default policy compiled into the binary (`builtin:default`).
    BuiltinDefault,
    /// A `.wasm` component on disk.
    File(PathBuf),
}

/// How foreign sessions secure their connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForeignTls {
    /// STARTTLS with a verified certificate, or no connection.
    Required,
    /// No TLS at all (test servers on loopback).
    Plaintext,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The gateway's domain, T.
    pub jid: String,
    /// The local server's component port.
    pub server: String,
    /// The component secret.
    pub secret: Secret,
    /// Domains whose accounts may use the gateway.
    pub local_domains: Vec<String>,
    /// Bare JIDs allowed to use admin commands.
    pub admins: Vec<BareJid>,
    /// How long foreign sessions stay up while the link to the local
    /// server is down.
    pub link_grace: Duration,
    /// Stanzas for the local server that may wait while its link is down.
    pub link_queue_limit: usize,
    /// Stanzas from the local server waiting for the router.
    pub link_inbound_queue: usize,
    /// Stanzas written to the local server and kept until a ping's answer
    /// proves they arrived; past it the oldest count as arrived.
    pub link_unconfirmed_limit: usize,
    /// How long controllers have to confirm their presence after the link
    /// comes up (and a stanza of an unconfirmed sender waits for it).
    pub confirm_window: Duration,
    /// The SQLite database file.
    pub database: PathBuf,
    /// The policy module.
    pub policy: PolicySource,
    /// Reload the module when its file is replaced.
    pub policy_watch: bool,
    /// `[policy.config]`, flattened to strings for the policy's `init`.
    pub policy_config: Vec<(String, String)>,
    /// CPU deadline of one decision.
    pub decision_timeout: Duration,
    /// Memory cap of one policy instance, bytes.
    pub memory_limit: usize,
    /// Where compiled policies are cached (`[policy] cache_dir`; default:
    /// `pizzja-cache` beside the database; empty: no cache).
    pub cache_dir: Option<PathBuf>,
    /// TLS mode of foreign sessions.
    pub foreign_tls: ForeignTls,
    /// Extra trusted roots for foreign sessions.
    pub ca_file: Option<PathBuf>,
    /// Static addresses for foreign domains.
    pub foreign_hosts: BTreeMap<String, SocketAddr>,
    /// Deadline for a foreign login.
    pub login_timeout: Duration,
    /// Deadline for an answer to a forwarded IQ request.
    pub iq_timeout: Duration,
    /// Stanzas that may wait for one foreign session.
    pub queue_limit: usize,
    /// Foreign logins in flight at once, gateway-wide.
    pub max_concurrent_logins: usize,
    /// Threads running the gateway's tasks (sessions, accounts, policy
    /// calls); 0 means one per CPU.
    pub threads: usize,
    /// Stanzas from the local server that may wait for one account's task.
    pub account_queue: usize,
    /// Stanzas of one account held for their senders' presence.
    pub held_limit: usize,
    /// Where Prometheus metrics are served (`[metrics] listen`), if at all.
    pub metrics_listen: Option<SocketAddr>,
    /// `[log] format`.
    pub log_format: LogFormat,
}

impl Config {
    /// Reads and validates the configuration file; relative paths in it are
    /// taken relative to the file's directory.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("failed to read configuration `{}`", path.display()))?;
        // Absolute, so that a relative `--config` (or none) still gives
        // absolute paths: wasmtime's cache refuses a relative directory.
        let absolute = std::path::absolute(path)
            .with_context(|| format!("failed to resolve configuration `{}`", path.display()))?;
        let base = absolute.parent().unwrap_or(Path::new("/"));
        Config::parse(&text, base)
            .with_context(|| format!("invalid configuration `{}`", path.display()))
    }

    /// Validates configuration text; `base` anchors relative paths.
    pub fn parse(text: &str, base: &Path) -> Result<Config> {
        let raw: RawConfig = toml::from_str(text)?;
        let c = raw.component;

        let jid = jid::DomainPart::new(&c.jid)
            .map_err(|e| anyhow!("`component.jid` = `{}` is not a domain: {e}", c.jid))?
            .to_string();
        let local_domains = match c.local_domains {
            Some(domains) => domains,
            None => match jid.split_once('.') {
                Some((_, parent)) if parent.contains('.') || !parent.is_empty() => {
                    vec![parent.to_string()]
                }
                _ => bail!("`component.local_domains` is required: `{jid}` has no parent domain"),
            },
        };
        if local_domains.is_empty() {
            bail!("`component.local_domains` is empty: nobody could use the gateway");
        }
        let admins = c
            .admins
            .iter()
            .map(|a| {
                BareJid::new(a)
                    .map_err(|e| anyhow!("`component.admins`: `{a}` is not a bare JID: {e}"))
            })
            .collect::<Result<Vec<_>>>()?;

        let database = base.join(
            raw.storage
                .database
                .unwrap_or_else(|| "pizzja.sqlite3".into()),
        );
        let cache_dir = match raw.policy.cache_dir {
            Some(dir) if dir.as_os_str().is_empty() => None,
            Some(dir) => Some(base.join(dir)),
            None => Some(database.parent().unwrap_or(base).join("pizzja-cache")),
        };

        let policy = match raw.policy.module.as_deref() {
            None | Some("builtin:default") => PolicySource::BuiltinDefault,
            Some(other) if other.starts_with("builtin:") => {
                bail!("`policy.module` = `{other}`: the only built-in policy is `builtin:default`")
            }
            Some(path) => PolicySource::File(base.join(path)),
        };
        let policy_config = raw
            .policy
            .config
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    toml::Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, v)
            })
            .collect();

        let f = raw.foreign;
        let foreign_tls = match f.tls.as_deref() {
            None | Some("required") => ForeignTls::Required,
            Some("plaintext") => ForeignTls::Plaintext,
            Some(other) => bail!("`foreign.tls` = `{other}`: expected `required` or `plaintext`"),
        };
        let foreign_hosts = f
            .hosts
            .into_iter()
            .map(|(domain, addr)| {
                let parsed = addr.parse::<SocketAddr>().map_err(|e| {
                    anyhow!(
                        "`foreign.hosts.\"{domain}\"` = `{addr}` is not an IP address and port: {e}"
                    )
                })?;
                Ok((domain, parsed))
            })
            .collect::<Result<_>>()?;
        let ca_file = f.ca_file.map(|p| base.join(p));
        if let Some(ca) = &ca_file
            && !ca.is_file()
        {
            bail!("`foreign.ca_file` = `{}` does not exist", ca.display());
        }

        let metrics_listen = raw
            .metrics
            .listen
            .map(|a| {
                a.parse::<SocketAddr>().map_err(|e| {
                    anyhow!("`metrics.listen` = `{a}` is not an IP address and port: {e}")
                })
            })
            .transpose()?;
        let log_format = match raw.log.format.as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => bail!("`log.format` = `{other}`: expected `text` or `json`"),
        };

        Ok(Config {
            jid,
            server: c.server,
            secret: c.secret,
            local_domains,
            admins,
            link_grace: Duration::from_secs(c.grace_secs.unwrap_or(60)),
            link_queue_limit: c.queue_limit.unwrap_or(1024).max(1),
            link_inbound_queue: c.inbound_queue.unwrap_or(1024).max(1),
            link_unconfirmed_limit: c.unconfirmed_limit.unwrap_or(4096).max(1),
            confirm_window: Duration::from_secs(c.confirm_secs.unwrap_or(5)),
            database,
            policy,
            policy_watch: raw.policy.watch,
            policy_config,
            decision_timeout: Duration::from_millis(raw.policy.decision_timeout_ms.unwrap_or(100)),
            memory_limit: raw.policy.memory_limit_mb.unwrap_or(64) as usize * 1024 * 1024,
            cache_dir,
            foreign_tls,
            ca_file,
            foreign_hosts,
            login_timeout: Duration::from_secs(f.login_timeout_secs.unwrap_or(30)),
            iq_timeout: Duration::from_secs(f.iq_timeout_secs.unwrap_or(60)),
            queue_limit: f.queue_limit.unwrap_or(256),
            max_concurrent_logins: f.max_concurrent_logins.unwrap_or(32).max(1),
            threads: raw.runtime.threads.unwrap_or(1),
            account_queue: raw.runtime.account_queue.unwrap_or(256).max(1),
            held_limit: raw
                .runtime
                .held_limit
                .unwrap_or(crate::account::HELD_LIMIT)
                .max(1),
            metrics_listen,
            log_format,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[component]
jid = "gw.example.org"
server = "127.0.0.1:5347"
secret = "s3cret"
"#;

    #[test]
    fn defaults_follow_the_interface_document() {
        let c = Config::parse(MINIMAL, Path::new("/etc/pizzja")).expect("valid");
        assert_eq!(c.local_domains, vec!["example.org"]);
        assert_eq!(c.database, Path::new("/etc/pizzja/pizzja.sqlite3"));
        assert_eq!(c.policy, PolicySource::BuiltinDefault);
        assert_eq!(c.foreign_tls, ForeignTls::Required);
        assert_eq!(c.iq_timeout, Duration::from_secs(60));
        assert_eq!(c.max_concurrent_logins, 32);
        assert_eq!(c.link_grace, Duration::from_secs(60));
        assert_eq!(c.link_queue_limit, 1024);
        assert_eq!(c.account_queue, 256);
        assert_eq!(c.link_inbound_queue, 1024);
        assert_eq!(c.link_unconfirmed_limit, 4096);
        assert_eq!(c.confirm_window, Duration::from_secs(5));
        assert_eq!(c.held_limit, crate::account::HELD_LIMIT);
        let set = MINIMAL.replace(
            "[component]",
            "[component]\ninbound_queue = 7\nunconfirmed_limit = 9\nconfirm_secs = 2",
        ) + "\n[runtime]\nheld_limit = 3";
        let c = Config::parse(&set, Path::new(".")).expect("valid");
        assert_eq!(
            (c.link_inbound_queue, c.link_unconfirmed_limit, c.held_limit),
            (7, 9, 3)
        );
        assert_eq!(c.confirm_window, Duration::from_secs(2));
        let zero = format!("{MINIMAL}\n[foreign]\nmax_concurrent_logins = 0");
        let c = Config::parse(&zero, Path::new(".")).expect("valid");
        assert_eq!(c.max_concurrent_logins, 1, "0 would stop every login");
        assert_eq!(c.threads, 1);
        let all = format!("{MINIMAL}\n[runtime]\nthreads = 0");
        let c = Config::parse(&all, Path::new(".")).expect("valid");
        assert_eq!(c.threads, 0, "0 is one per CPU, decided by the runtime");
    }

    #[test]
    fn relative_paths_resolve_against_the_configuration_s_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = dir.path().join("certs/ca.pem");
        std::fs::create_dir_all(ca.parent().expect("has a parent")).expect("mkdir");
        std::fs::write(&ca, "").expect("write ca");
        let path = dir.path().join("pizzja.toml");
        let text = format!(
            "{MINIMAL}\n[storage]\ndatabase = \"data/gw.sqlite3\"\n[policy]\nmodule = \"p/x.wasm\"\ncache_dir = \"cache\"\n[foreign]\nca_file = \"certs/ca.pem\"\n"
        );
        std::fs::write(&path, text).expect("write config");
        let c = Config::load(&path).expect("valid");
        assert_eq!(c.database, dir.path().join("data/gw.sqlite3"));
        assert_eq!(c.policy, PolicySource::File(dir.path().join("p/x.wasm")));
        assert_eq!(c.cache_dir, Some(dir.path().join("cache")));
        assert_eq!(c.ca_file, Some(ca));
        // Without a cache_dir, the cache sits beside the database.
        std::fs::write(&path, MINIMAL).expect("write config");
        let c = Config::load(&path).expect("valid");
        assert_eq!(c.database, dir.path().join("pizzja.sqlite3"));
        assert_eq!(c.cache_dir, Some(dir.path().join("pizzja-cache")));
    }

    #[test]
    fn metrics_and_log_format_are_optional() {
        let c = Config::parse(MINIMAL, Path::new(".")).expect("valid");
        assert_eq!(c.metrics_listen, None);
        assert_eq!(c.log_format, LogFormat::Text);
        let text = format!(
            "{MINIMAL}\n[metrics]\nlisten = \"127.0.0.1:9537\"\n[log]\nformat = \"json\"\n"
        );
        let c = Config::parse(&text, Path::new(".")).expect("valid");
        assert_eq!(
            c.metrics_listen,
            Some("127.0.0.1:9537".parse().expect("addr"))
        );
        assert_eq!(c.log_format, LogFormat::Json);
    }

    #[test]
    fn the_secret_never_prints() {
        let c = Config::parse(MINIMAL, Path::new(".")).expect("valid");
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn policy_config_values_become_strings() {
        let text = format!(
            "{MINIMAL}\n[policy]\nmodule = \"p.wasm\"\n[policy.config]\ninitial_presence = \"none\"\nlimit = 3\n"
        );
        let c = Config::parse(&text, Path::new("/x")).expect("valid");
        assert_eq!(c.policy, PolicySource::File("/x/p.wasm".into()));
        assert!(
            c.policy_config
                .contains(&("initial_presence".into(), "none".into()))
        );
        assert!(c.policy_config.contains(&("limit".into(), "3".into())));
    }

    #[test]
    fn bad_values_name_the_offending_key() {
        let cases = [
            (
                format!("{MINIMAL}\n[foreign]\ntls = \"maybe\""),
                "foreign.tls",
            ),
            (
                format!("{MINIMAL}\n[foreign.hosts]\n\"r.net\" = \"nowhere\""),
                "foreign.hosts",
            ),
            (
                format!("{MINIMAL}\n[policy]\nmodule = \"builtin:other\""),
                "policy.module",
            ),
            (
                MINIMAL.replace("gw.example.org", "not a domain@"),
                "component.jid",
            ),
            (format!("{MINIMAL}\nbogus = 1"), "bogus"),
            (
                format!("{MINIMAL}\n[metrics]\nlisten = \"localhost\""),
                "metrics.listen",
            ),
            (format!("{MINIMAL}\n[log]\nformat = \"xml\""), "log.format"),
        ];
        for (text, key) in cases {
            let err = format!("{:#}", Config::parse(&text, Path::new(".")).expect_err(key));
            assert!(err.contains(key), "{key}: {err}");
        }
    }
}
