//! Test support: a CA, another CA and a server certificate for `localhost`/127.0.0.1 made by
//! openssl in a directory (`ca.crt`, `other-ca.crt`, `server.crt`/`server.key`).

use std::path::Path;
use std::process::Command;

pub fn openssl(dir: &Path, args: &[&str]) {
  let out = Command::new("openssl")
    .args(args)
    .current_dir(dir)
    .output()
    .expect("openssl must be installed");
  assert!(
    out.status.success(),
    "openssl {args:?}: {}",
    String::from_utf8_lossy(&out.stderr)
  );
}

/// A CA (`<name>.crt`/`.key`) in `dir`.
pub fn make_ca(dir: &Path, name: &str) {
  let (key, crt, subj) = (format!("{name}.key"), format!("{name}.crt"), format!("/CN={name}"));
  openssl(
    dir,
    &[
      "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &crt, "-days", "1", "-subj", &subj,
    ],
  );
}

/// A certificate `<name>.crt`/`.key` for `cn`, signed by the CA `<ca>.crt`, with `ext`
/// (openssl extfile lines).
pub fn make_signed(dir: &Path, name: &str, cn: &str, ca: &str, ext: &str) {
  let (key, csr, crt, subj) = (
    format!("{name}.key"),
    format!("{name}.csr"),
    format!("{name}.crt"),
    format!("/CN={cn}"),
  );
  openssl(
    dir,
    &[
      "req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", &subj,
    ],
  );
  let extfile = format!("{name}.ext");
  std::fs::write(dir.join(&extfile), ext).unwrap();
  let (ca_crt, ca_key) = (format!("{ca}.crt"), format!("{ca}.key"));
  openssl(
    dir,
    &[
      "x509",
      "-req",
      "-in",
      &csr,
      "-CA",
      &ca_crt,
      "-CAkey",
      &ca_key,
      "-CAcreateserial",
      "-out",
      &crt,
      "-days",
      "1",
      "-extfile",
      &extfile,
    ],
  );
}

/// A new scratch directory holding [`make_certs`]'s files.
pub fn cert_dir(tag: &str) -> std::path::PathBuf {
  let dir = super::scratch_dir(tag);
  make_certs(&dir);
  dir
}

/// `ca.crt`/`ca.key`, `other-ca.crt`/`.key`, and `server.crt`/`server.key` signed by `ca`
/// for `localhost` and 127.0.0.1, in `dir`.
pub fn make_certs(dir: &Path) {
  make_ca(dir, "ca");
  make_ca(dir, "other-ca");
  make_signed(
    dir,
    "server",
    "localhost",
    "ca",
    "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
  );
}

/// Client certificates for mutual TLS: `client.crt`/`.key` signed by `ca`, and
/// `foreign-client.crt`/`.key` signed by `other-ca` (after [`make_certs`]).
pub fn make_client_certs(dir: &Path) {
  let client_ext = "extendedKeyUsage=clientAuth\n";
  make_signed(dir, "client", "ferrocache", "ca", client_ext);
  make_signed(dir, "foreign-client", "ferrocache", "other-ca", client_ext);
}
