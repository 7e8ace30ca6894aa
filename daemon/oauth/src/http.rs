//! The HTTP the token exchanges go over: one ureq agent (no redirects, a global timeout,
//! statuses returned rather than turned into errors, since a token endpoint's 400 carries the
//! RFC 6749 error the caller needs), adapted to `oauth2`'s [`oauth2::SyncHttpClient`].

use std::time::Duration;

use oauth2::{HttpRequest, HttpResponse};

/// A ureq agent set up for token endpoints.
#[derive(Debug, Clone)]
pub(crate) struct Http {
    agent: ureq::Agent,
}

/// Why a request got no reply.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct HttpError(String);

impl Http {
    pub(crate) fn new(timeout: Duration) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // Following redirects from a token endpoint would hand credentials to wherever it
            // points (RFC 6749 §10.12 in spirit); none of the providers redirect.
            .max_redirects(0)
            .timeout_global(Some(timeout))
            .user_agent(concat!("migrated/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Self { agent }
    }

    /// POSTs a form and returns the status and the body.
    pub(crate) fn post_form(
        &self,
        url: &str,
        form: &[(&str, &str)],
    ) -> Result<(u16, Vec<u8>), HttpError> {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let request = ureq::http::Request::post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(body.into_bytes())
            .map_err(|e| HttpError(format!("{url}: {e}")))?;
        let reply = oauth2::SyncHttpClient::call(self, request)?;
        Ok((reply.status().as_u16(), reply.into_body()))
    }
}

impl oauth2::SyncHttpClient for Http {
    type Error = HttpError;

    fn call(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let url = request.uri().to_string();
        let reply = self
            .agent
            .run(request)
            .map_err(|e| HttpError(format!("{url}: {e}")))?;
        let (parts, mut body) = reply.into_parts();
        let bytes = body
            .read_to_vec()
            .map_err(|e| HttpError(format!("{url}: reading the reply: {e}")))?;
        Ok(HttpResponse::from_parts(parts, bytes))
    }
}
