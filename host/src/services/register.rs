//! XEP-0077: In-Band Registration, as XEP-0100 gateways use it: a user
//! gives the foreign address and password, checked by a real login before
//! they are stored.

use super::{Control, Services, result};
use crate::config::Secret;
use crate::storage::{KeptSalted, Registration};
use crate::xmpp::error_reply;
use crate::xmpp::foreign::{LoginSecret, check_credentials};
use crate::xmpp::scram::SaltedCache;
use jid::{BareJid, Jid};
use minidom::Element;
use std::sync::Arc;
use tracing::{info, warn};
use xmpp_parsers::data_forms::{DataForm, DataFormType, Field, FieldType};
use xmpp_parsers::ibr::LegacyQuery;

/// The namespace of registration.
pub const NS: &str = "jabber:iq:register";
/// What T announces for it.
pub const FEATURES: &[&str] = &[NS];
const NS_DATA: &str = "jabber:x:data";

/// The form a user who is not registered fills in: the plain fields and
/// the same as a XEP-0004 form (XEP-0077 section 3.1).
pub fn blank_form() -> Element {
    let mut query: Element = LegacyQuery {
        instructions: Some(
            "Enter the address (user@domain) and password of the account this gateway should connect to."
                .into(),
        ),
        username: Some(String::new()),
        password: Some(String::new()),
        ..LegacyQuery::default()
    }
    .into();
    let field = |var: &str, type_, label: &str| Field {
        label: Some(label.into()),
        required: true,
        ..Field::new(var, type_)
    };
    let form = DataForm {
        type_: DataFormType::Form,
        title: Some("Register a foreign account".into()),
        instructions: None,
        fields: vec![
            field(
                "username",
                FieldType::TextSingle,
                "Foreign address (user@domain)",
            ),
            field("password", FieldType::TextPrivate, "Password"),
        ],
    };
    query.append_child(form.into());
    query
}

/// What a registered user sees: that they are, and as whom (never the
/// password).
pub fn registered_as(foreign: &BareJid) -> Element {
    LegacyQuery {
        registered: true,
        username: Some(foreign.to_string()),
        ..LegacyQuery::default()
    }
    .into()
}

/// XEP-0077 section 3.1: the form, or what is registered.
pub async fn form(services: &Services, request: &Element, local: &BareJid) {
    let query = match services.storage.get(local) {
        Ok(Some(reg)) => registered_as(&reg.foreign),
        Ok(None) => blank_form(),
        Err(e) => {
            warn!(error = %e, "registration lookup failed");
            return services.store_unavailable(request).await;
        }
    };
    services.send(result(request, Some(query))).await;
}

/// Username and password from the plain fields or from the data form.
pub fn fields(query: &Element) -> (Option<String>, Option<String>) {
    let plain = |name: &str| {
        query
            .get_child(name, NS)
            .map(Element::text)
            .filter(|s| !s.is_empty())
    };
    let form = |var: &str| {
        query.get_child("x", NS_DATA).and_then(|x| {
            x.children()
                .find(|f| f.name() == "field" && f.attr("var") == Some(var))
                .and_then(|f| f.get_child("value", NS_DATA))
                .map(Element::text)
        })
    };
    (
        plain("username").or_else(|| form("username")),
        plain("password").or_else(|| form("password")),
    )
}

/// XEP-0077 sections 3.1 and 3.2: register (checked by a real login), or
/// remove.
pub async fn set(services: &Arc<Services>, request: Element, local: BareJid) {
    let Some(query) = request.get_child("query", NS) else {
        return;
    };
    if query.has_child("remove", NS) {
        return remove(services, &request, local).await;
    }
    let (Some(username), Some(password)) = fields(query) else {
        let text = "username and password are required";
        return services
            .reply_error(&request, "modify", "not-acceptable", text)
            .await;
    };
    let foreign = match BareJid::new(username.trim()) {
        Ok(j) if j.node().is_some() => j,
        _ => {
            let text = "the username must be a bare JID user@domain";
            return services
                .reply_error(&request, "modify", "jid-malformed", text)
                .await;
        }
    };
    let password = Secret(password);
    let services = services.clone();
    // The login check takes a while: off the router's path.
    tokio::spawn(async move {
        let reply = check_and_store(&services, &request, local, foreign, password).await;
        services.send(reply).await;
    });
}

async fn remove(services: &Services, request: &Element, local: BareJid) {
    match services.storage.remove(&local) {
        Ok(true) => {
            info!(%local, "registration removed");
            services.send(result(request, None)).await;
            let _ = services.control.send(Control::Removed(local));
        }
        Ok(false) => {
            services
                .reply_error(request, "cancel", "item-not-found", "not registered")
                .await
        }
        Err(e) => {
            warn!(error = %e, "removing a registration failed");
            services.store_unavailable(request).await;
        }
    }
}

/// Logs in as `foreign` once; stores the registration if that worked. The
/// answer for the user either way.
async fn check_and_store(
    services: &Services,
    request: &Element,
    local: BareJid,
    foreign: BareJid,
    password: Secret,
) -> Element {
    let connector = services.dialer.connector(foreign.domain().as_str());
    let secret = LoginSecret {
        password,
        salted: SaltedCache::new(None, services.dialer.scram.clone(), |_| {}),
    };
    let identity = Jid::from(foreign.clone());
    let checked = check_credentials(&connector, &identity, &secret, services.login_timeout).await;
    if let Err(failure) = checked {
        info!(%local, %foreign, %failure, "registration refused");
        let type_ = if failure.condition() == "not-authorized" {
            "auth"
        } else {
            "wait"
        };
        let text = failure.to_string();
        return error_reply(request, type_, failure.condition(), Some(&text))
            .unwrap_or_else(|| result(request, None));
    }
    let reg = Registration {
        local: local.clone(),
        foreign: foreign.clone(),
        password: secret.password.clone(),
    };
    if let Err(e) = services.storage.put(&reg) {
        warn!(error = %e, "storing a registration failed");
        let text = "could not store the registration";
        return error_reply(request, "wait", "internal-server-error", Some(text))
            .unwrap_or_else(|| result(request, None));
    }
    // The check's login derived the salted password: kept now, the first
    // session does not derive it again.
    if let Some(salted) = secret.salted.current() {
        let kept = KeptSalted {
            registration: reg,
            salted,
        };
        if let Err(e) = services.storage.keep_salted_passwords(&[kept]) {
            warn!(error = %format!("{e:#}"), "could not keep the salted password; the session derives it again");
        }
    }
    info!(%local, %foreign, "registered");
    let _ = services.control.send(Control::Registered(local));
    result(request, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_blank_form_has_the_plain_fields_and_the_data_form() {
        let q = blank_form();
        assert!(q.get_child("instructions", NS).is_some());
        assert!(
            q.get_child("username", NS)
                .is_some_and(|u| u.text().is_empty())
        );
        assert!(q.get_child("password", NS).is_some());
        assert!(q.get_child("registered", NS).is_none());
        let x = q.get_child("x", NS_DATA).expect("form");
        assert_eq!(x.attr("type"), Some("form"));
        let vars: Vec<(Option<&str>, Option<&str>)> = x
            .children()
            .filter(|f| f.name() == "field")
            .map(|f| (f.attr("var"), f.attr("type")))
            .collect();
        // XEP-0004 section 3.3: a field without a type is text-single.
        assert_eq!(
            vars,
            [
                (Some("username"), None),
                (Some("password"), Some("text-private"))
            ]
        );
    }

    #[test]
    fn a_registered_user_sees_the_foreign_address_and_never_the_password() {
        let q = registered_as(&BareJid::new("me@remote.net").expect("jid"));
        assert!(q.get_child("registered", NS).is_some());
        assert_eq!(
            q.get_child("username", NS).map(Element::text),
            Some("me@remote.net".into())
        );
        assert!(q.get_child("password", NS).is_none());
    }

    #[test]
    fn fields_come_from_the_plain_elements_or_from_the_form() {
        let plain: Element = "<query xmlns='jabber:iq:register'><username>me@remote.net</username><password>pw</password></query>".parse().expect("xml");
        assert_eq!(
            fields(&plain),
            (Some("me@remote.net".into()), Some("pw".into()))
        );
        let form: Element = "<query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'><field var='username'><value>me@remote.net</value></field><field var='password'><value>pw</value></field></x></query>".parse().expect("xml");
        assert_eq!(
            fields(&form),
            (Some("me@remote.net".into()), Some("pw".into()))
        );
        let empty: Element = "<query xmlns='jabber:iq:register'><username/></query>"
            .parse()
            .expect("xml");
        assert_eq!(fields(&empty), (None, None));
    }
}
