//! The device authorization grant (RFC 8628), for `migratectl authorize`: the user opens a
//! page on any device, enters a code and consents; the tool polls the token endpoint and
//! comes back with a refresh token for the job, so nobody copies tokens by hand.

use std::time::Duration;

use migrated_core::{OAuth2Spec, Secret};
use oauth2::basic::BasicClient;
use oauth2::{
    AuthType, ClientId, ClientSecret, DeviceAuthorizationUrl, RequestTokenError, Scope,
    StandardDeviceAuthorizationResponse, TokenResponse, TokenUrl,
};

use crate::http::Http;

/// What the user is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    /// The page to open.
    pub verification_uri: String,
    /// That page with the code filled in, where the provider gives one.
    pub verification_uri_complete: Option<String>,
    /// The code to enter there.
    pub user_code: String,
    /// How long the code is good for.
    pub expires_in: Duration,
}

/// Runs the grant: asks for a device code, calls `show` with what the user must do, polls
/// until the user consents (or `timeout`, or the code expires) and returns the refresh token.
///
/// # Errors
///
/// What the spec lacks, the provider's refusal (`access_denied`, `expired_token`) or an
/// endpoint that cannot be reached, worded for the user.
pub fn authorize(
    spec: &OAuth2Spec,
    timeout: Duration,
    show: impl FnOnce(&Prompt),
) -> Result<Secret, String> {
    let client_id = spec
        .client_id
        .clone()
        .ok_or("client_id: missing: the device grant needs the OAuth client's id")?;
    let token_url = spec
        .token_url()
        .ok_or("token_url: missing: name a provider or give the token endpoint")?;
    let device_url = spec.device_authorization_url().ok_or(
        "device_authorization_url: missing: name a provider or give the device authorization endpoint",
    )?;
    let mut client = BasicClient::new(ClientId::new(client_id))
        .set_auth_type(AuthType::RequestBody)
        .set_token_uri(TokenUrl::new(token_url.clone()).map_err(|e| format!("token_url: {e}"))?)
        .set_device_authorization_url(
            DeviceAuthorizationUrl::new(device_url.clone())
                .map_err(|e| format!("device_authorization_url: {e}"))?,
        );
    if let Some(secret) = &spec.client_secret {
        client = client.set_client_secret(ClientSecret::new(secret.expose().to_owned()));
    }
    let http = Http::new(Duration::from_secs(30));
    let scopes = spec
        .scope()
        .unwrap_or_default()
        .split_whitespace()
        .map(|s| Scope::new(s.to_owned()))
        .collect::<Vec<_>>();
    let details: StandardDeviceAuthorizationResponse = client
        .exchange_device_code()
        .add_scopes(scopes)
        .request(&http)
        .map_err(|e| match e {
            RequestTokenError::ServerResponse(e) => format!(
                "the device authorization endpoint {device_url} refused: {}{}",
                e.error().as_ref(),
                e.error_description()
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            ),
            RequestTokenError::Parse(e, _) => format!(
                "the device authorization endpoint {device_url} answered with no device code: {e}"
            ),
            other => format!("the device authorization endpoint {device_url}: {other}"),
        })?;
    show(&Prompt {
        verification_uri: details.verification_uri().to_string(),
        verification_uri_complete: details
            .verification_uri_complete()
            .map(|u| u.secret().clone()),
        user_code: details.user_code().secret().clone(),
        expires_in: details.expires_in(),
    });
    let token = client
        .exchange_device_access_token(&details)
        .request(&http, std::thread::sleep, Some(timeout))
        .map_err(|e| match e {
            RequestTokenError::ServerResponse(e) => format!(
                "the token endpoint {token_url} gave no token: {}{}",
                e.error().as_ref(),
                e.error_description()
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            ),
            RequestTokenError::Parse(e, _) => {
                format!("the token endpoint {token_url} answered with no token: {e}")
            }
            other => format!("the token endpoint {token_url}: {other}"),
        })?;
    token
        .refresh_token()
        .map(|r| Secret::new(r.secret().clone()))
        .ok_or_else(|| {
            format!(
                "the token endpoint {token_url} gave an access token but no refresh token: ask \
                 for offline access in the scope (Microsoft: offline_access)"
            )
        })
}
