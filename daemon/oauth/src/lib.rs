//! OAuth 2 access tokens for one endpoint, as long as the migration lasts.
//!
//! [`Tokens`] is the daemon's [`AccessTokens`]: it holds the grant of an endpoint's `[oauth2]`
//! table (a refresh token, a Google service account's key, an application's client secret),
//! fetches an access token when a connection asks for one, keeps it, and fetches the next one
//! ahead of its expiry (a quarter of its life before, at most a minute) or as soon as a server
//! refuses it. Every connection of a job asks, so a migration outlives any one token.
//!
//! - Refresh tokens and client credentials go through the `oauth2` crate (RFC 6749 §6, §4.4).
//! - A service account signs an RS256 assertion for the mailbox's user (`sub`) and exchanges
//!   it at the token endpoint (RFC 7523), as Google's domain-wide delegation documents.
//! - [`device`] runs the device authorization grant (RFC 8628) for `migratectl authorize`.
//!
//! A grant the provider refuses (`invalid_grant`, `invalid_client`, `unauthorized_client`) is
//! a [`TokenError`] with [`Cause::Authentication`]: retrying cannot help, new credentials do.
//! An endpoint that cannot be reached, or answers 5xx, is temporary.

pub mod device;
mod grant;
mod http;
mod service_account;

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use migrated_core::{AccessToken, AccessTokens, Cause, OAuth2Spec, Secret, TokenError};

/// Tokens for one endpoint: its grant, the user they are for, and the current token.
#[derive(Debug)]
pub struct Tokens {
    grant: grant::Grant,
    current: Mutex<Option<Held>>,
}

#[derive(Debug)]
struct Held {
    token: AccessToken,
    /// When to fetch the next one.
    renew_at: Option<SystemTime>,
}

impl Tokens {
    /// Tokens for `user` by the grant `spec` describes (its secrets resolved).
    ///
    /// # Errors
    ///
    /// What the spec lacks (a token URL, a client id, the grant's secret) or a service
    /// account key that is not one, with what to do.
    pub fn new(spec: &OAuth2Spec, user: &str, timeout: Duration) -> Result<Self, String> {
        Ok(Self {
            grant: grant::Grant::new(spec, user, timeout)?,
            current: Mutex::new(None),
        })
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Option<Held>> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl AccessTokens for Tokens {
    fn token(&self) -> Result<AccessToken, TokenError> {
        // Held across the fetch: connections opening together wait for one exchange instead
        // of each spending a refresh.
        let mut held = self.held();
        if let Some(h) = held.as_ref()
            && h.renew_at.is_none_or(|at| SystemTime::now() < at)
        {
            return Ok(h.token.clone());
        }
        let token = self.grant.fetch()?;
        let renew_at = token.expires_at.map(|exp| {
            let now = SystemTime::now();
            let life = exp.duration_since(now).unwrap_or_default();
            exp - (life / 4).min(Duration::from_secs(60))
        });
        *held = Some(Held {
            token: token.clone(),
            renew_at,
        });
        Ok(token)
    }

    fn refused(&self, token: &Secret) {
        let mut held = self.held();
        if held.as_ref().is_some_and(|h| h.token.token == *token) {
            *held = None;
        }
    }
}

/// A token endpoint's refusal or failure, worded for the administrator.
pub(crate) fn refused(url: &str, what: &str, error: &str, description: Option<&str>) -> TokenError {
    let said = match description {
        Some(d) if !d.is_empty() => format!("{error}: {d}"),
        _ => error.to_owned(),
    };
    let permanent = matches!(
        error,
        "invalid_grant"
            | "invalid_client"
            | "unauthorized_client"
            | "access_denied"
            | "invalid_scope"
    );
    TokenError {
        message: format!("the token endpoint {url} refused {what}: {said}"),
        cause: permanent.then_some(Cause::Authentication),
    }
}

/// A token endpoint that could not be reached or gave no usable answer (temporary).
pub(crate) fn unreachable(url: &str, detail: impl std::fmt::Display) -> TokenError {
    TokenError {
        message: format!("the token endpoint {url} gave no token: {detail}"),
        cause: Some(Cause::Network),
    }
}

#[cfg(test)]
mod tests;
