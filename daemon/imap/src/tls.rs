//! rustls client configuration for the certificate policies, and the words for what is wrong
//! with a certificate.
//!
//! Every policy but [`CertCheck::DangerAcceptAnyCertificate`] goes through [`Verifier`]: the
//! standard webpki checks against the system's roots or the `ca_file`; a certificate named
//! itself in `ca_file` (a self-signed one, as `openssl req -x509` makes it, which marks it
//! `CA:TRUE` and which webpki then refuses as `CaUsedAsEndEntity`) is accepted when it is
//! within its validity period and made out for the host; a pinned SHA-256 fingerprint
//! (`tls_fingerprint`) accepts exactly that certificate. A refusal is a [`CertRefusal`]: what
//! is wrong in plain words, the certificate's fingerprint, and the setting that would fix it.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, OtherError, RootCertStore,
    SignatureScheme,
};

use crate::endpoint::CertCheck;

mod der;

/// Builds the TLS configuration for a certificate policy.
///
/// # Errors
///
/// A readable message when the CA file cannot be read or holds no certificate.
pub fn client_config(check: &CertCheck) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let verifier = match check {
        CertCheck::System => {
            let mut roots = RootCertStore::empty();
            let loaded = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(loaded.certs);
            if roots.is_empty() {
                return Err("no trusted root certificates found on this system (install ca-certificates, or name a CA file)".into());
            }
            Verifier::new(&provider, roots, Vec::new(), None, false)?
        }
        CertCheck::CaFile(path) => {
            let mut roots = RootCertStore::empty();
            let mut named = Vec::new();
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("cannot read CA file {}: {e}", path.display()))?;
            for cert in certs {
                let cert =
                    cert.map_err(|e| format!("CA file {} is not valid PEM: {e}", path.display()))?;
                roots.add(cert.clone()).map_err(|e| {
                    format!(
                        "CA file {} holds an unusable certificate: {e}",
                        path.display()
                    )
                })?;
                named.push(cert);
            }
            if roots.is_empty() {
                return Err(format!("CA file {} holds no certificate", path.display()));
            }
            Verifier::new(&provider, roots, named, None, true)?
        }
        CertCheck::Fingerprint(pin) => Verifier::new(
            &provider,
            RootCertStore::empty(),
            Vec::new(),
            Some(*pin),
            false,
        )?,
        CertCheck::DangerAcceptAnyCertificate => {
            return Ok(Arc::new(
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
                    .with_no_client_auth(),
            ));
        }
    };
    Ok(Arc::new(
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth(),
    ))
}

/// `sha256:` and 64 hex digits (colons between bytes allowed, any case), as
/// [`fingerprint`] prints it and `openssl x509 -fingerprint -sha256` does.
///
/// # Errors
///
/// What is wrong with the text.
pub fn parse_fingerprint(text: &str) -> Result<[u8; 32], String> {
    let Some(hex) = text.trim().strip_prefix("sha256:") else {
        return Err(format!(
            "{text:?} is not \"sha256:\" followed by the certificate's SHA-256 fingerprint"
        ));
    };
    let digits: Vec<u8> = hex.bytes().filter(|b| *b != b':').collect();
    let mut out = [0u8; 32];
    if digits.len() != 64 {
        return Err(format!(
            "{text:?}: a SHA-256 fingerprint has 64 hex digits, this has {}",
            digits.len()
        ));
    }
    for (i, pair) in digits.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).map_err(|_| format!("{text:?}: not hex"))?;
        out[i] = u8::from_str_radix(s, 16).map_err(|_| format!("{text:?}: {s:?} is not hex"))?;
    }
    Ok(out)
}

/// A certificate's SHA-256 fingerprint as `tls_fingerprint` takes it (`sha256:AB:CD:…`).
pub fn fingerprint(cert: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert);
    let hex: Vec<String> = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    format!("sha256:{}", hex.join(":"))
}

/// Why a certificate was refused, in the words an administrator uses, with its fingerprint
/// and the setting that would make it trusted. It travels inside rustls' error
/// (`CertificateError::Other`); [`refusal_text`] finds it again.
#[derive(Debug, Clone)]
pub struct CertRefusal {
    /// The whole sentence.
    pub text: String,
    /// The refused certificate's fingerprint, as `tls_fingerprint` takes it.
    pub fingerprint: String,
}

impl std::fmt::Display for CertRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for CertRefusal {}

/// The plain-words refusal inside a TLS handshake error, if the verifier made one.
pub fn refusal_text(e: &std::io::Error) -> Option<String> {
    refusal(e).map(|r| r.text)
}

/// The verifier's refusal inside a TLS handshake error (its words and the certificate's
/// fingerprint), if it made one.
pub fn refusal(e: &std::io::Error) -> Option<CertRefusal> {
    refusal_of(e.get_ref()?.downcast_ref::<rustls::Error>()?)
}

/// The verifier's refusal inside a rustls error, if it made one.
pub fn refusal_of(e: &rustls::Error) -> Option<CertRefusal> {
    match e {
        rustls::Error::InvalidCertificate(CertificateError::Other(o)) => {
            o.0.downcast_ref::<CertRefusal>().cloned()
        }
        _ => None,
    }
}

/// The fingerprint of the certificate a server presented on a connection (its first, the
/// end-entity certificate), as `tls_fingerprint` takes it.
pub fn peer_fingerprint(conn: &rustls::CommonState) -> Option<String> {
    conn.peer_certificates()
        .and_then(|chain| chain.first())
        .map(|c| fingerprint(c))
}

/// The standard checks, the certificates named in `ca_file` themselves, or a pin.
#[derive(Debug)]
struct Verifier {
    provider: Arc<rustls::crypto::CryptoProvider>,
    /// The standard checks; `None` with a pin only.
    webpki: Option<Arc<WebPkiServerVerifier>>,
    /// The certificates of `ca_file`: one of them presented as the server's is trusted as it is.
    named: Vec<CertificateDer<'static>>,
    pin: Option<[u8; 32]>,
    /// Whether the roots are a `ca_file` (for the words of a refusal).
    ca_file: bool,
}

impl Verifier {
    fn new(
        provider: &Arc<rustls::crypto::CryptoProvider>,
        roots: RootCertStore,
        named: Vec<CertificateDer<'static>>,
        pin: Option<[u8; 32]>,
        ca_file: bool,
    ) -> Result<Self, String> {
        let webpki = if roots.is_empty() {
            None
        } else {
            Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| e.to_string())?,
            )
        };
        Ok(Verifier {
            provider: provider.clone(),
            webpki,
            named,
            pin,
            ca_file,
        })
    }

    fn refuse(&self, end_entity: &CertificateDer<'_>, what: String) -> rustls::Error {
        self.refuse_as(end_entity, what, Fix::Trust)
    }

    fn refuse_as(&self, end_entity: &CertificateDer<'_>, what: String, fix: Fix) -> rustls::Error {
        let fp = fingerprint(end_entity);
        let pin_it = format!(
            "pin this very certificate with tls_fingerprint = \"{fp}\" once its administrator \
             confirms that fingerprint (a pin checks neither dates nor names)"
        );
        let fix = if fix == Fix::Renew {
            format!("renew the certificate on the server, or {pin_it}")
        } else if fix == Fix::Name {
            format!("connect with a name it lists as host, or {pin_it}")
        } else if self.pin.is_some() {
            format!(
                "if the server's certificate was replaced on purpose, confirm the new fingerprint \
                 {fp} with its administrator and set tls_fingerprint = \"{fp}\""
            )
        } else if self.ca_file {
            format!(
                "name the CA that signed it (or, for a self-signed certificate, the certificate \
                 itself) with ca_file, or pin it with tls_fingerprint = \"{fp}\" once its \
                 administrator confirms that fingerprint"
            )
        } else {
            format!(
                "name its CA (or, for a self-signed certificate, the certificate itself) with \
                 ca_file, or pin it with tls_fingerprint = \"{fp}\" once its administrator \
                 confirms that fingerprint"
            )
        };
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(
            CertRefusal {
                text: format!("{what}; {fix}"),
                fingerprint: fp,
            },
        ))))
    }

    /// A certificate named itself in `ca_file`: trusted if it is in its validity period and
    /// made out for the host.
    fn check_named(
        &self,
        end_entity: &CertificateDer<'_>,
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let facts = der::facts(end_entity).map_err(|e| {
            self.refuse(
                end_entity,
                format!("the server's certificate cannot be read ({e})"),
            )
        })?;
        let now = now.as_secs() as i64;
        if now > facts.not_after {
            return Err(self.refuse_as(
                end_entity,
                format!(
                    "the server's certificate (the one named in ca_file) expired on {}",
                    der::date(facts.not_after)
                ),
                Fix::Renew,
            ));
        }
        if now < facts.not_before {
            return Err(self.refuse_as(
                end_entity,
                format!(
                    "the server's certificate (the one named in ca_file) is not valid before {} \
                     (check this machine's clock)",
                    der::date(facts.not_before)
                ),
                Fix::Renew,
            ));
        }
        let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
        let by_san = rustls::client::verify_server_name(&parsed, server_name).is_ok();
        let host = server_name.to_str();
        // Certificates from `openssl req -x509 -subj /CN=host` have no subjectAltName; like
        // OpenSSL-based clients, take the common name then.
        let by_cn = !facts.has_san
            && facts
                .common_name
                .as_deref()
                .is_some_and(|cn| cn.eq_ignore_ascii_case(&host));
        if by_san || by_cn {
            return Ok(ServerCertVerified::assertion());
        }
        Err(self.refuse_as(
            end_entity,
            format!(
                "the server's certificate (the one named in ca_file) is made out for {}, not for \
                 {host}",
                facts.names().join(", ")
            ),
            Fix::Name,
        ))
    }

    /// webpki's refusal in plain words.
    fn explain(
        &self,
        end_entity: &CertificateDer<'_>,
        server_name: &ServerName<'_>,
        e: &rustls::Error,
    ) -> rustls::Error {
        let host = server_name.to_str();
        let facts = der::facts(end_entity).ok();
        let self_signed = facts.as_ref().is_some_and(|f| f.self_signed);
        let trust = if self.ca_file {
            "ca_file"
        } else {
            "this machine's trusted roots"
        };
        let (what, fix) = match e {
            rustls::Error::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. },
            ) => (
                match &facts {
                    Some(f) => {
                        format!(
                            "the certificate of {host} expired on {}",
                            der::date(f.not_after)
                        )
                    }
                    None => format!("the certificate of {host} has expired"),
                },
                Fix::Renew,
            ),
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
            ) => (
                format!("the certificate of {host} is not valid yet (check this machine's clock)"),
                Fix::Renew,
            ),
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            ) => (
                match &facts {
                    Some(f) => format!(
                        "the certificate of {host} is made out for {}, not for {host}",
                        f.names().join(", ")
                    ),
                    None => format!("the certificate of {host} is made out for another name"),
                },
                Fix::Name,
            ),
            _ if self_signed => (
                format!("the certificate of {host} is self-signed and not in {trust}"),
                Fix::Trust,
            ),
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
                let issuer = facts
                    .as_ref()
                    .and_then(|f| f.issuer_cn.clone())
                    .map(|i| format!(" ({i})"))
                    .unwrap_or_default();
                (
                    format!(
                        "the certificate of {host} is signed by an issuer{issuer} not in {trust}"
                    ),
                    Fix::Trust,
                )
            }
            other => (
                format!("the certificate of {host} was refused: {other}"),
                Fix::Trust,
            ),
        };
        self.refuse_as(end_entity, what, fix)
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(pin) = &self.pin {
            let digest = ring::digest::digest(&ring::digest::SHA256, end_entity);
            if digest.as_ref() == pin.as_slice() {
                return Ok(ServerCertVerified::assertion());
            }
            let host = server_name.to_str();
            let want = fingerprint_text(pin);
            return Err(self.refuse(
                end_entity,
                format!(
                    "the certificate of {host} has the fingerprint {}, not the pinned {want}",
                    fingerprint(end_entity)
                ),
            ));
        }
        let Some(webpki) = &self.webpki else {
            return Err(self.refuse(end_entity, "no certificate is trusted".to_owned()));
        };
        match webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Ok(v) => Ok(v),
            Err(_) if self.named.iter().any(|c| c.as_ref() == end_entity.as_ref()) => {
                self.check_named(end_entity, server_name, now)
            }
            Err(e) => Err(self.explain(end_entity, server_name, &e)),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// What a refusal proposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fix {
    /// Trust it: `ca_file` or `tls_fingerprint`.
    Trust,
    /// Out of its validity period: renew it (or pin it).
    Renew,
    /// Made out for other names: connect by one of them (or pin it).
    Name,
}

/// A pinned fingerprint as `tls_fingerprint` spells it.
pub fn fingerprint_text(pin: &[u8; 32]) -> String {
    let hex: Vec<String> = pin.iter().map(|b| format!("{b:02X}")).collect();
    format!("sha256:{}", hex.join(":"))
}

/// Accepts any certificate but still checks handshake signatures, so the session is at least
/// bound to the key the server presented.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_as_openssl_and_the_refusals_print_them() {
        let fp = fingerprint(b"certificate");
        assert!(fp.starts_with("sha256:") && fp.len() == 7 + 95, "{fp}");
        let pin = parse_fingerprint(&fp).unwrap();
        assert_eq!(fingerprint_text(&pin), fp);
        assert_eq!(
            parse_fingerprint(
                &fp.replace(':', "")
                    .replacen("sha256", "sha256:", 1)
                    .to_lowercase()
            )
            .unwrap(),
            pin
        );
        assert!(parse_fingerprint("AB:CD").unwrap_err().contains("sha256:"));
        assert!(
            parse_fingerprint("sha256:ABCD")
                .unwrap_err()
                .contains("64 hex digits")
        );
        assert!(
            parse_fingerprint(&format!("sha256:{}", "zz".repeat(32)))
                .unwrap_err()
                .contains("not hex")
        );
    }
}
