//! Writing to a CardDAV server: creating an address book (extended MKCOL) and a contact
//! (conditional PUT).

use super::{Client, DavError, Put, escape};

impl Client {
    /// Creates an address book (extended MKCOL); an existing one is not an error.
    ///
    /// # Errors
    ///
    /// [`DavError`] with the server's reply.
    pub fn create_book(
        &self,
        href: &str,
        display_name: &str,
        description: Option<&str>,
    ) -> Result<(), DavError> {
        let description = description
            .map(|d| {
                format!(
                    "<c:addressbook-description>{}</c:addressbook-description>",
                    escape(d)
                )
            })
            .unwrap_or_default();
        let body = format!(
            r#"<?xml version="1.0" encoding="utf-8"?><d:mkcol xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:carddav"><d:set><d:prop><d:resourcetype><d:collection/><c:addressbook/></d:resourcetype><d:displayname>{}</d:displayname>{description}</d:prop></d:set></d:mkcol>"#,
            escape(display_name)
        );
        let reply = self.send(
            "MKCOL",
            href,
            &[("Content-Type", "application/xml; charset=utf-8")],
            Some(body.as_bytes()),
        )?;
        if reply.0 == 405 {
            // RFC 4918: MKCOL on an existing resource.
            return Ok(());
        }
        self.check(format!("MKCOL {href}"), reply).map(|_| ())
    }

    /// PUTs a vCard unchanged; with `only_new`, `If-None-Match: *`, so an existing contact is
    /// reported as [`Put::Exists`] and never overwritten.
    ///
    /// # Errors
    ///
    /// [`DavError`] with the server's status and words (a refused contact).
    pub fn put(&self, href: &str, vcard: &[u8], only_new: bool) -> Result<Put, DavError> {
        let mut headers = vec![("Content-Type", "text/vcard; charset=utf-8")];
        if only_new {
            headers.push(("If-None-Match", "*"));
        }
        let reply = self.send("PUT", href, &headers, Some(vcard))?;
        if only_new && reply.0 == 412 {
            return Ok(Put::Exists);
        }
        let (headers, _) = self.check(format!("PUT {href}"), reply)?;
        Ok(Put::Stored(
            headers
                .get("etag")
                .and_then(|e| e.to_str().ok())
                .map(str::to_owned),
        ))
    }
}
