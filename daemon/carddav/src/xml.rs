//! WebDAV multistatus replies (RFC 4918), read with roxmltree: only the properties migrated
//! asks for, from `propstat`s whose status is 2xx.

const DAV: &str = "DAV:";
const CARDDAV: &str = "urn:ietf:params:xml:ns:carddav";

/// An address book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Book {
    /// Its href (a path on the server).
    pub href: String,
    /// Display name, else the last path segment.
    pub name: String,
    /// Description, if any.
    pub description: Option<String>,
    /// Sync token (RFC 6578), if the server offers sync-collection.
    pub sync_token: Option<String>,
}

impl From<Book> for migrated_core::AddressBook {
    /// The book as the engine sees it (the sync token stays with the client).
    fn from(b: Book) -> Self {
        Self {
            href: b.href,
            name: b.name,
            description: b.description,
        }
    }
}

/// A contact as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Its href.
    pub href: String,
    /// Its ETag, quotes included.
    pub etag: String,
}

/// A contact with its vCard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    /// Its href.
    pub href: String,
    /// Its ETag.
    pub etag: String,
    /// The vCard as the server sent it.
    pub data: Vec<u8>,
}

/// One `response` of a multistatus.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Response {
    pub href: String,
    /// A `status` of 404 directly in the response (sync-collection: removed).
    pub gone: bool,
    pub collection: bool,
    pub addressbook: bool,
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub sync_token: Option<String>,
    pub etag: Option<String>,
    pub address_data: Option<String>,
    pub principal: Option<String>,
    pub home: Option<String>,
}

fn is(node: &roxmltree::Node<'_, '_>, ns: &str, name: &str) -> bool {
    node.is_element() && node.tag_name().name() == name && node.tag_name().namespace() == Some(ns)
}

fn child<'a, 'i>(
    node: &roxmltree::Node<'a, 'i>,
    ns: &str,
    name: &str,
) -> Option<roxmltree::Node<'a, 'i>> {
    node.children().find(|c| is(c, ns, name))
}

fn text(node: &roxmltree::Node<'_, '_>) -> String {
    node.descendants()
        .filter(roxmltree::Node::is_text)
        .filter_map(|t| t.text())
        .collect::<String>()
}

fn status_ok(status: &str) -> bool {
    status
        .split_whitespace()
        .nth(1)
        .is_some_and(|code| code.starts_with('2'))
}

/// The responses of a multistatus.
pub(crate) fn multistatus(body: &[u8]) -> Result<Vec<Response>, String> {
    multistatus_with_token(body).map(|(r, _)| r)
}

/// The responses of a multistatus and its top-level `sync-token` (sync-collection).
pub(crate) fn multistatus_with_token(
    body: &[u8],
) -> Result<(Vec<Response>, Option<String>), String> {
    let text_body = std::str::from_utf8(body).map_err(|e| format!("reply is not UTF-8: {e}"))?;
    let doc =
        roxmltree::Document::parse(text_body).map_err(|e| format!("reply is not XML: {e}"))?;
    let root = doc.root_element();
    if !is(&root, DAV, "multistatus") {
        return Err(format!(
            "expected a DAV: multistatus, got <{}>",
            root.tag_name().name()
        ));
    }
    let token = child(&root, DAV, "sync-token").map(|t| text(&t).trim().to_owned());
    let mut out = Vec::new();
    for r in root.children().filter(|c| is(c, DAV, "response")) {
        let Some(href) = child(&r, DAV, "href") else {
            continue;
        };
        let mut resp = Response {
            href: text(&href).trim().to_owned(),
            ..Response::default()
        };
        if let Some(s) = child(&r, DAV, "status") {
            resp.gone = text(&s).contains(" 404");
        }
        for ps in r.children().filter(|c| is(c, DAV, "propstat")) {
            let ok = child(&ps, DAV, "status").is_some_and(|s| status_ok(&text(&s)));
            let Some(prop) = child(&ps, DAV, "prop") else {
                continue;
            };
            if !ok {
                continue;
            }
            for p in prop.children().filter(roxmltree::Node::is_element) {
                let (ns, name) = (p.tag_name().namespace(), p.tag_name().name());
                match (ns, name) {
                    (Some(DAV), "resourcetype") => {
                        resp.collection = child(&p, DAV, "collection").is_some();
                        resp.addressbook = child(&p, CARDDAV, "addressbook").is_some();
                    }
                    (Some(DAV), "displayname") => {
                        let t = text(&p);
                        if !t.trim().is_empty() {
                            resp.display_name = Some(t.trim().to_owned());
                        }
                    }
                    (Some(CARDDAV), "addressbook-description") => {
                        let t = text(&p);
                        if !t.trim().is_empty() {
                            resp.description = Some(t);
                        }
                    }
                    (Some(DAV), "sync-token") => resp.sync_token = Some(text(&p).trim().to_owned()),
                    (Some(DAV), "getetag") => resp.etag = Some(text(&p).trim().to_owned()),
                    (Some(CARDDAV), "address-data") => resp.address_data = Some(text(&p)),
                    (Some(DAV), "current-user-principal") => {
                        resp.principal = child(&p, DAV, "href").map(|h| text(&h).trim().to_owned());
                    }
                    (Some(CARDDAV), "addressbook-home-set") => {
                        resp.home = child(&p, DAV, "href").map(|h| text(&h).trim().to_owned());
                    }
                    _ => {}
                }
            }
        }
        out.push(resp);
    }
    Ok((out, token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multistatus_with_books_contacts_and_removals_is_read() {
        let body = r#"<?xml version="1.0"?>
<multistatus xmlns="DAV:" xmlns:C="urn:ietf:params:xml:ns:carddav">
 <response><href>/alice/work/</href>
  <propstat><prop><resourcetype><collection/><C:addressbook/></resourcetype><displayname>Arbeit &amp; Co</displayname><sync-token>http://x/ns/sync/7</sync-token></prop><status>HTTP/1.1 200 OK</status></propstat>
  <propstat><prop><C:addressbook-description/></prop><status>HTTP/1.1 404 Not Found</status></propstat>
 </response>
 <response><href>/alice/work/c%201.vcf</href>
  <propstat><prop><getetag>"abc"</getetag><C:address-data>BEGIN:VCARD&#13;
FN:Zoë&#13;
END:VCARD&#13;
</C:address-data></prop><status>HTTP/1.1 200 OK</status></propstat>
 </response>
 <response><href>/alice/work/gone.vcf</href><status>HTTP/1.1 404 Not Found</status></response>
 <sync-token>http://x/ns/sync/8</sync-token>
</multistatus>"#
            .as_bytes();
        let (r, token) = multistatus_with_token(body).unwrap();
        assert_eq!(token.as_deref(), Some("http://x/ns/sync/8"));
        assert!(r[0].addressbook && r[0].collection);
        assert_eq!(r[0].display_name.as_deref(), Some("Arbeit & Co"));
        assert_eq!(r[0].description, None, "404 propstats are ignored");
        assert_eq!(r[1].href, "/alice/work/c%201.vcf");
        assert_eq!(r[1].etag.as_deref(), Some("\"abc\""));
        assert_eq!(
            r[1].address_data.as_deref(),
            Some("BEGIN:VCARD\r\nFN:Zoë\r\nEND:VCARD\r\n")
        );
        assert!(r[2].gone);
        assert!(multistatus(b"<html/>").is_err());
        assert!(multistatus(b"not xml").is_err());
    }
}
