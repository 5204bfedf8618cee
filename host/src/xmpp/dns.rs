//! Where a foreign domain's XMPP server is (RFC 6120 section 3.2, XEP-0368):
//! its `_xmpps-client._tcp` (direct TLS) and `_xmpp-client._tcp` (STARTTLS)
//! SRV records, merged and put in the order of RFC 2782 (priority, then a
//! weighted random pick), or the domain itself on port 5222 when it has
//! none.
//!
//! Written here because tokio-xmpp tries SRV records in the order the
//! answer lists them and knows no `_xmpps-client` records
//! (tokio-xmpp 6.0.0, src/connect/dns.rs: "TODO: sort lookup records by
//! priority/weight").

use std::sync::Arc;

/// One way to reach a domain's server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// SRV priority: lower first.
    pub priority: u16,
    /// SRV weight: the share among targets of the same priority.
    pub weight: u16,
    /// The host to connect to.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// TLS from the first byte (XEP-0368) rather than STARTTLS.
    pub direct_tls: bool,
}

/// A source of SRV answers. The gateway asks DNS ([`SystemDns`]); tests
/// answer for made-up domains (a test hook: no DNS server to fake).
pub trait Resolve: Send + Sync {
    /// The SRV records of `name` (`_service._proto.domain.`), as targets
    /// with `direct_tls` set as given; none when there are none.
    fn srv(&self, name: String, direct_tls: bool) -> futures::future::BoxFuture<'_, Vec<Target>>;
}

/// Shared, printable in a configuration's debug output.
#[derive(Clone)]
pub struct Resolver(pub Arc<dyn Resolve>);

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolver")
    }
}

impl Default for Resolver {
    fn default() -> Self {
        Resolver(Arc::new(SystemDns))
    }
}

/// DNS as the system's resolver configuration says (hickory-resolver).
pub struct SystemDns;

impl Resolve for SystemDns {
    fn srv(&self, name: String, direct_tls: bool) -> futures::future::BoxFuture<'_, Vec<Target>> {
        Box::pin(async move {
            let built = match hickory_resolver::TokioResolver::builder_tokio() {
                Ok(builder) => builder.build().map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let resolver = match built {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "no DNS resolver; trying the domain itself");
                    return Vec::new();
                }
            };
            let Ok(lookup) = resolver.srv_lookup(name.as_str()).await else {
                return Vec::new();
            };
            lookup
                .answers()
                .iter()
                .filter_map(|record| match &record.data {
                    hickory_resolver::proto::rr::RData::SRV(srv) => Some(Target {
                        priority: srv.priority,
                        weight: srv.weight,
                        host: srv.target.to_ascii().trim_end_matches('.').to_string(),
                        port: srv.port,
                        direct_tls,
                    }),
                    _ => None,
                })
                .collect()
        })
    }
}

/// Where to try, in order, to reach `domain`'s client service: its SRV
/// targets (direct TLS ones only when `direct_tls` is allowed), or the
/// domain itself on 5222. `pick(total)` chooses a number in `0..=total`
/// for the weighted order.
pub async fn targets(
    resolver: &dyn Resolve,
    domain: &str,
    direct_tls: bool,
    pick: &mut impl FnMut(u32) -> u32,
) -> Vec<Target> {
    let mut found = Vec::new();
    if direct_tls {
        found.extend(
            resolver
                .srv(format!("_xmpps-client._tcp.{domain}."), true)
                .await,
        );
    }
    found.extend(
        resolver
            .srv(format!("_xmpp-client._tcp.{domain}."), false)
            .await,
    );
    if found.is_empty() {
        return vec![Target {
            priority: 0,
            weight: 0,
            host: domain.to_string(),
            port: 5222,
            direct_tls: false,
        }];
    }
    // RFC 2782: a target of "." says the service is not offered there.
    found.retain(|t| !t.host.is_empty() && t.host != ".");
    order(found, pick)
}

/// RFC 2782's order: by priority; within one, repeatedly a weighted random
/// pick, weight-0 targets placed first so that they are chosen rarely.
pub fn order(mut targets: Vec<Target>, pick: &mut impl FnMut(u32) -> u32) -> Vec<Target> {
    targets.sort_by_key(|t| (t.priority, t.weight != 0));
    let mut ordered = Vec::with_capacity(targets.len());
    while !targets.is_empty() {
        let priority = targets[0].priority;
        let mut group: Vec<Target> = Vec::new();
        while targets.first().is_some_and(|t| t.priority == priority) {
            group.push(targets.remove(0));
        }
        while !group.is_empty() {
            let total: u32 = group.iter().map(|t| u32::from(t.weight)).sum();
            let r = pick(total).min(total);
            let mut running = 0;
            let at = group
                .iter()
                .position(|t| {
                    running += u32::from(t.weight);
                    running >= r
                })
                .unwrap_or(0);
            ordered.push(group.remove(at));
        }
    }
    ordered
}

/// A random number in `0..=total`.
pub fn random_pick(total: u32) -> u32 {
    rand::random_range(0..=total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(priority: u16, weight: u16, host: &str) -> Target {
        Target {
            priority,
            weight,
            host: host.into(),
            port: 5222,
            direct_tls: false,
        }
    }

    fn hosts(ts: &[Target]) -> Vec<&str> {
        ts.iter().map(|t| t.host.as_str()).collect()
    }

    #[test]
    fn lower_priorities_come_first_whatever_the_weights() {
        let ordered = order(
            vec![t(20, 100, "c"), t(10, 0, "a"), t(10, 50, "b")],
            &mut |total| total,
        );
        assert_eq!(hosts(&ordered)[2], "c");
    }

    #[test]
    fn within_a_priority_the_pick_follows_the_running_sum_of_weights() {
        // Weights 0 (first), 10, 30: a pick of 0 takes the weight-0 target,
        // 5 the first heavy one, 40 the last.
        let group = || vec![t(1, 10, "light"), t(1, 0, "zero"), t(1, 30, "heavy")];
        assert_eq!(hosts(&order(group(), &mut |_| 0))[0], "zero");
        assert_eq!(hosts(&order(group(), &mut |_| 5))[0], "light");
        assert_eq!(hosts(&order(group(), &mut |t| t))[0], "heavy");
        // Over many random picks, shares follow the weights (3 to 1).
        let mut first = std::collections::HashMap::new();
        for _ in 0..4000 {
            let g = vec![t(1, 30, "heavy"), t(1, 10, "light")];
            *first
                .entry(order(g, &mut random_pick)[0].host.clone())
                .or_insert(0) += 1;
        }
        let heavy = f64::from(first["heavy"]) / 4000.0;
        assert!((0.70..0.80).contains(&heavy), "{heavy}");
    }

    struct Canned(Vec<(String, Vec<Target>)>);

    impl Resolve for Canned {
        fn srv(
            &self,
            name: String,
            direct_tls: bool,
        ) -> futures::future::BoxFuture<'_, Vec<Target>> {
            let found = self
                .0
                .iter()
                .filter(|(n, _)| *n == name)
                .flat_map(|(_, ts)| ts.clone())
                .map(|mut t| {
                    t.direct_tls = direct_tls;
                    t
                })
                .collect();
            Box::pin(async move { found })
        }
    }

    #[tokio::test]
    async fn both_services_merge_by_priority_and_no_record_means_the_domain_on_5222() {
        let dns = Canned(vec![
            (
                "_xmpps-client._tcp.r.net.".into(),
                vec![t(5, 0, "tls.r.net")],
            ),
            (
                "_xmpp-client._tcp.r.net.".into(),
                vec![t(10, 0, "xmpp.r.net"), t(1, 0, ".")],
            ),
        ]);
        let found = targets(&dns, "r.net", true, &mut |t| t).await;
        assert_eq!(hosts(&found), ["tls.r.net", "xmpp.r.net"]);
        assert!(found[0].direct_tls && !found[1].direct_tls);
        // Direct TLS not allowed (plaintext): only STARTTLS records.
        let found = targets(&dns, "r.net", false, &mut |t| t).await;
        assert_eq!(hosts(&found), ["xmpp.r.net"]);
        let none = targets(&dns, "other.net", true, &mut |t| t).await;
        assert_eq!(none, [t(0, 0, "other.net")]);
    }
}
