//! Just enough JID handling for policies: split and join the parts of
//! addresses the host has already validated.

/// A JID split into its parts (RFC 7622). Borrowed from the text it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JidParts<'a> {
    /// The localpart, if any.
    pub node: Option<&'a str>,
    /// The domainpart.
    pub domain: &'a str,
    /// The resourcepart, if any. It may itself contain `/`.
    pub resource: Option<&'a str>,
}

impl<'a> JidParts<'a> {
    /// Splits `jid` at the first `/` (resource) and the last `@` before it
    /// (localpart). Returns `None` for an empty domain, an empty localpart
    /// before `@`, or an empty resource after `/`.
    pub fn parse(jid: &'a str) -> Option<Self> {
        let (bare, resource) = match jid.split_once('/') {
            Some((bare, res)) if !res.is_empty() => (bare, Some(res)),
            Some(_) => return None,
            None => (jid, None),
        };
        let (node, domain) = match bare.rsplit_once('@') {
            Some((node, domain)) if !node.is_empty() => (Some(node), domain),
            Some(_) => return None,
            None => (None, bare),
        };
        if domain.is_empty() || domain.contains('@') || node.is_some_and(|n| n.contains('@')) {
            return None;
        }
        Some(JidParts {
            node,
            domain,
            resource,
        })
    }

    /// The bare JID (`node@domain` or `domain`) as text.
    pub fn bare(&self) -> String {
        self.join(None)
    }

    /// The JID as text: the bare JID, and `/resource` if there is one.
    pub fn full(&self) -> String {
        self.join(self.resource)
    }

    /// Joined by hand, in one allocation of the right size: `format!` pulls
    /// in `core::fmt`, whose code was a tenth of the default policy's
    /// samples inside the gateway, where decisions run with cold caches
    /// (BENCHMARKS.md).
    fn join(&self, resource: Option<&str>) -> String {
        let part = |p: Option<&str>| p.map_or(0, |p| p.len() + 1);
        let mut jid = String::with_capacity(part(self.node) + self.domain.len() + part(resource));
        if let Some(node) = self.node {
            jid.push_str(node);
            jid.push('@');
        }
        jid.push_str(self.domain);
        if let Some(resource) = resource {
            jid.push('/');
            jid.push_str(resource);
        }
        jid
    }
}

/// Splits a local resource `A/B` into `A` and `B`; a resource without `/`
/// is `A` with an empty `B` (docs/behaviour.md section 9).
///
/// ```
/// assert_eq!(pizzja_sdk::split_resource("Work/phone"), ("Work", "phone"));
/// assert_eq!(pizzja_sdk::split_resource("Work"), ("Work", ""));
/// ```
pub fn split_resource(resource: &str) -> (&str, &str) {
    resource.split_once('/').unwrap_or((resource, ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_bare_and_domain_jids() {
        let j = JidParts::parse("alice@example.org/Work/phone").expect("valid");
        assert_eq!(
            (j.node, j.domain, j.resource),
            (Some("alice"), "example.org", Some("Work/phone"))
        );
        assert_eq!(j.bare(), "alice@example.org");
        assert_eq!(j.full(), "alice@example.org/Work/phone");
        let d = JidParts::parse("remote.net").expect("valid");
        assert_eq!((d.node, d.domain, d.resource), (None, "remote.net", None));
        assert_eq!(
            (d.bare(), d.full()),
            ("remote.net".into(), "remote.net".into())
        );
    }

    #[test]
    fn refuses_what_cannot_be_a_jid() {
        for bad in ["", "@x", "a@", "a@b@c", "x/", "/r", "a@/r"] {
            assert_eq!(JidParts::parse(bad), None, "{bad:?}");
        }
    }
}
