//! The three grants an endpoint's tokens come from, and one exchange each.

use std::time::{Duration, SystemTime};

use migrated_core::{AccessToken, OAuth2Spec, Secret, TokenError};
use oauth2::basic::{BasicClient, BasicErrorResponse, BasicTokenResponse};
use oauth2::{
    AuthType, ClientId, ClientSecret, RefreshToken, RequestTokenError, Scope, TokenResponse,
    TokenUrl,
};

use crate::http::Http;
use crate::service_account::ServiceAccountKey;
use crate::{refused, unreachable};

/// One endpoint's grant, ready to exchange.
#[derive(Debug)]
pub(crate) struct Grant {
    kind: migrated_core::Grant,
    token_url: String,
    scopes: Vec<String>,
    client_id: String,
    client_secret: Option<Secret>,
    refresh_token: Option<Secret>,
    key: Option<ServiceAccountKey>,
    user: String,
    http: Http,
}

impl Grant {
    pub(crate) fn new(spec: &OAuth2Spec, user: &str, timeout: Duration) -> Result<Self, String> {
        spec.check()
            .map_err(|(field, message)| format!("{field}: {message}"))?;
        let key = match spec.grant {
            migrated_core::Grant::ServiceAccount => {
                let text = spec.service_account_key.as_ref().map(Secret::expose);
                Some(
                    ServiceAccountKey::parse(text.unwrap_or_default())
                        .map_err(|e| format!("service_account_key_file: {e}"))?,
                )
            }
            _ => None,
        };
        let token_url = spec
            .token_url
            .clone()
            .or_else(|| key.as_ref().and_then(|k| k.token_uri.clone()))
            .or_else(|| spec.token_url())
            .ok_or("token_url: missing: the key names no token_uri; give token_url")?;
        TokenUrl::new(token_url.clone()).map_err(|e| format!("token_url: {token_url:?}: {e}"))?;
        Ok(Self {
            kind: spec.grant,
            token_url,
            scopes: spec
                .scope()
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            client_id: spec.client_id.clone().unwrap_or_default(),
            client_secret: spec.client_secret.clone(),
            refresh_token: spec.refresh_token.clone(),
            key,
            user: user.to_owned(),
            http: Http::new(timeout),
        })
    }

    /// One exchange at the token endpoint.
    pub(crate) fn fetch(&self) -> Result<AccessToken, TokenError> {
        match self.kind {
            migrated_core::Grant::ServiceAccount => self.jwt_bearer(),
            migrated_core::Grant::RefreshToken | migrated_core::Grant::ClientCredentials => {
                self.standard()
            }
        }
    }

    /// The refresh-token and client-credentials grants, through `oauth2`.
    fn standard(&self) -> Result<AccessToken, TokenError> {
        let mut client = BasicClient::new(ClientId::new(self.client_id.clone()))
            // In the body, as Microsoft's identity platform documents; Google takes both.
            .set_auth_type(AuthType::RequestBody)
            .set_token_uri(
                TokenUrl::new(self.token_url.clone()).map_err(|e| TokenError {
                    message: format!("token_url {:?}: {e}", self.token_url),
                    cause: Some(migrated_core::Cause::Authentication),
                })?,
            );
        if let Some(secret) = &self.client_secret {
            client = client.set_client_secret(ClientSecret::new(secret.expose().to_owned()));
        }
        let scopes = self.scopes.iter().map(|s| Scope::new(s.clone()));
        let (what, reply) = match self.kind {
            migrated_core::Grant::ClientCredentials => (
                format!("the client credentials of application {}", self.client_id),
                client
                    .exchange_client_credentials()
                    .add_scopes(scopes)
                    .request(&self.http),
            ),
            _ => {
                let refresh = RefreshToken::new(
                    self.refresh_token
                        .as_ref()
                        .map(|s| s.expose().to_owned())
                        .unwrap_or_default(),
                );
                let reply = client
                    .exchange_refresh_token(&refresh)
                    .add_scopes(scopes)
                    .request(&self.http);
                (format!("the refresh token of {}", self.user), reply)
            }
        };
        match reply {
            Ok(r) => Ok(access(&r)),
            Err(RequestTokenError::ServerResponse(e)) => Err(refused(
                &self.token_url,
                &what,
                e.error().as_ref(),
                e.error_description().map(String::as_str),
            )),
            Err(RequestTokenError::Request(e)) => Err(unreachable(&self.token_url, e)),
            Err(RequestTokenError::Parse(e, _)) => Err(unreachable(
                &self.token_url,
                format!("its reply is not a token response: {e}"),
            )),
            Err(RequestTokenError::Other(e)) => Err(unreachable(&self.token_url, e)),
        }
    }

    /// RFC 7523: an assertion signed with the service account's key, for the user.
    fn jwt_bearer(&self) -> Result<AccessToken, TokenError> {
        let key = self
            .key
            .as_ref()
            .expect("a service-account grant has its key");
        let what = format!("service account {} for {}", key.client_email, self.user);
        let assertion = key
            .assertion(&self.user, &self.scopes.join(" "), &self.token_url)
            .map_err(|e| TokenError {
                message: format!(
                    "the key of service account {} cannot sign: {e}",
                    key.client_email
                ),
                cause: Some(migrated_core::Cause::Authentication),
            })?;
        let (status, body) = self
            .http
            .post_form(
                &self.token_url,
                &[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                    ("assertion", assertion.expose()),
                ],
            )
            .map_err(|e| unreachable(&self.token_url, e))?;
        if status == 200 {
            let r: BasicTokenResponse = serde_json::from_slice(&body).map_err(|e| {
                unreachable(
                    &self.token_url,
                    format!("its reply is not a token response: {e}"),
                )
            })?;
            return Ok(access(&r));
        }
        match serde_json::from_slice::<BasicErrorResponse>(&body) {
            Ok(e) if (400..500).contains(&status) => Err(refused(
                &self.token_url,
                &what,
                e.error().as_ref(),
                e.error_description().map(String::as_str),
            )),
            _ => Err(unreachable(
                &self.token_url,
                format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(200)])
                ),
            )),
        }
    }
}

fn access(r: &BasicTokenResponse) -> AccessToken {
    AccessToken {
        token: Secret::new(r.access_token().secret().clone()),
        expires_at: r.expires_in().map(|d| SystemTime::now() + d),
    }
}
