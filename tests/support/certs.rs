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

/// `ca.crt`/`ca.key`, `other-ca.crt`/`.key`, and `server.crt`/`server.key` signed by `ca`
/// for `localhost` and 127.0.0.1, in `dir`.
pub fn make_certs(dir: &Path) {
  make_ca(dir, "ca");
  make_ca(dir, "other-ca");
  openssl(
    dir,
    &[
      "req",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      "server.key",
      "-out",
      "server.csr",
      "-subj",
      "/CN=localhost",
    ],
  );
  std::fs::write(dir.join("san.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
  openssl(
    dir,
    &[
      "x509",
      "-req",
      "-in",
      "server.csr",
      "-CA",
      "ca.crt",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      "server.crt",
      "-days",
      "1",
      "-extfile",
      "san.ext",
    ],
  );
}
