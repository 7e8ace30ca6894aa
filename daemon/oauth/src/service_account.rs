//! A Google service account's JSON key, and the RS256 assertion it signs for one user
//! (RFC 7523 §2.1, as Google documents for domain-wide delegation).

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use migrated_core::Secret;
use serde::{Deserialize, Serialize};

/// The fields of a key file the assertion needs.
#[derive(Deserialize)]
pub(crate) struct ServiceAccountKey {
    /// `service_account`.
    #[serde(rename = "type")]
    kind: String,
    /// The account, the assertion's issuer.
    pub(crate) client_email: String,
    /// The key's id, sent as `kid`.
    #[serde(default)]
    pub(crate) private_key_id: Option<String>,
    /// The token endpoint the key is for.
    #[serde(default)]
    pub(crate) token_uri: Option<String>,
    private_key: Secret,
}

impl std::fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .field("private_key_id", &self.private_key_id)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

impl ServiceAccountKey {
    /// Parses a key file's text, checking that it is a service account's with a usable key.
    ///
    /// # Errors
    ///
    /// Not JSON, not a service account key, or a private key that is not an RSA PEM key.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let key: Self = serde_json::from_str(text).map_err(|e| {
            format!("not a service account key file (JSON from the Google Cloud console): {e}")
        })?;
        if key.kind != "service_account" {
            return Err(format!(
                "a key of type {:?}; a service account's key says \"service_account\"",
                key.kind
            ));
        }
        EncodingKey::from_rsa_pem(key.private_key.expose().as_bytes())
            .map_err(|e| format!("its private_key is not an RSA key in PEM: {e}"))?;
        Ok(key)
    }

    /// The signed assertion for `user`, good for an hour (the most Google allows).
    pub(crate) fn assertion(&self, user: &str, scope: &str, aud: &str) -> Result<Secret, String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let claims = Claims {
            iss: &self.client_email,
            sub: user,
            scope,
            aud,
            iat: now,
            exp: now + 3600,
        };
        let mut header = Header::new(Algorithm::RS256);
        header.kid.clone_from(&self.private_key_id);
        let key = EncodingKey::from_rsa_pem(self.private_key.expose().as_bytes())
            .map_err(|e| e.to_string())?;
        jsonwebtoken::encode(&header, &claims, &key)
            .map(Secret::new)
            .map_err(|e| e.to_string())
    }
}
