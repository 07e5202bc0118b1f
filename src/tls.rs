//! The TLS options of `[zookeeper] tls`, read from its files: shared by the daemon's session
//! ([`crate::session`], once per connection, so that renewed certificates are used) and by `status`.
//!
//! It reads files, and may block on a hung file system: the daemon calls it off its event loop.
//! Its errors name the file and never quote its content, nor the parser's view of it (a key's parse
//! error could quote the key).

use std::path::{Path, PathBuf};

use zookeeper_client as zk;

use crate::config::TlsConfig;
use crate::files::ReadError;

/// Why the files of `[zookeeper] tls` give no usable options: one line that names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("zookeeper tls {what} {}: {error}", path.display())]
    Unreadable {
        what: &'static str,
        path: PathBuf,
        error: ReadError,
    },
    #[error("zookeeper tls {what} {}: not a PEM file", path.display())]
    NotPem { what: &'static str, path: PathBuf },
    /// The CA or cert file holds no PEM certificate.
    #[error("zookeeper tls {what} {}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it", path.display())]
    NoCertificate { what: &'static str, path: PathBuf },
    #[error("zookeeper tls key {}: no usable PEM private key in it", path.display())]
    NoKey { path: PathBuf },
}

/// The TLS options of `[zookeeper] tls`, from its files as they are now. Each must be a regular file
/// of at most 16 MiB ([`crate::files::read_regular`]).
///
/// # Errors
/// [`TlsError`], naming the file that cannot be read or holds no usable certificate or key.
pub fn tls_options(tls: &TlsConfig) -> Result<zk::TlsOptions, TlsError> {
    let read =
        |what: &'static str, path: &Path| {
            let (_, bytes) = crate::files::read_regular(path, crate::files::MAX_FILE_BYTES)
                .map_err(|error| TlsError::Unreadable {
                    what,
                    path: path.to_owned(),
                    error,
                })?;
            String::from_utf8(bytes).map_err(|_| TlsError::NotPem {
                what,
                path: path.to_owned(),
            })
        };
    let ca = read("ca", &tls.ca)?;
    let options = zk::TlsOptions::new()
        .with_pem_ca(&ca)
        .map_err(|_| TlsError::NoCertificate {
            what: "ca",
            path: tls.ca.clone(),
        })?;
    let (Some(cert_path), Some(key_path)) = (&tls.cert, &tls.key) else {
        return Ok(options);
    };
    let cert = read("cert", cert_path)?;
    let key = read("key", key_path)?;
    let no_cert = || TlsError::NoCertificate {
        what: "cert",
        path: cert_path.clone(),
    };
    // The library takes a cert file without certificates; the handshake would fail later, and less
    // clearly.
    if !cert.contains("-----BEGIN CERTIFICATE-----") {
        return Err(no_cert());
    }
    // The library's error is not passed on (a key's parse error could quote the key); it only tells
    // which file to name.
    options.with_pem_identity(&cert, &key).map_err(|e| {
        if e.to_string().contains("read cert") {
            no_cert()
        } else {
            TlsError::NoKey {
                path: key_path.clone(),
            }
        }
    })
}
