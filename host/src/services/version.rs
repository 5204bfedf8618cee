//! XEP-0092: Software Version. T names itself and its version.

use super::{Services, result};
use minidom::Element;
use xmpp_parsers::version::VersionResult;

/// The namespace of version queries.
pub const NS: &str = "jabber:iq:version";
/// What T announces for it.
pub const FEATURES: &[&str] = &[NS];

/// T's name and version (no operating system: nobody needs to know it).
pub fn version() -> VersionResult {
    VersionResult {
        name: "Pizzja".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        os: None,
    }
}

/// Answers a version query.
pub async fn answer(services: &Services, request: &Element) {
    services.send(result(request, Some(version().into()))).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_names_pizzja_and_its_version() {
        let el: Element = version().into();
        assert_eq!(el.ns(), NS);
        assert_eq!(
            el.get_child("name", NS).map(Element::text),
            Some("Pizzja".into())
        );
        assert_eq!(
            el.get_child("version", NS).map(Element::text),
            Some(env!("CARGO_PKG_VERSION").into())
        );
        assert!(el.get_child("os", NS).is_none());
    }
}
