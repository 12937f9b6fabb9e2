//! Operating the real binary: tokens and scopes on every endpoint, the partitions view and
//! `augur partitions`, the status endpoint, JSON logs that never hold a token.

use std::process::Command;
use std::time::Duration;

use augur_suite::{augur_binary, http_with, metric, AugurServer, TempDir};

const WRITER: &str = "writer-secret-0123456789";
const READER: &str = "reader-secret-0123456789";
const ADMIN: &str = "admin-secret-0123456789";

/// A config with one token per scope.
fn tokens_config(dir: &TempDir) -> String {
    let path = dir.0.join("augur.toml");
    let mut text = String::from("[wal]\ncheckpoint-interval = \"500ms\"\n");
    for (name, token, scope) in [("fleet", WRITER, "write"), ("grafana", READER, "read"), ("ops", ADMIN, "admin")] {
        text += &format!("[[auth.tokens]]\nname = \"{name}\"\ntoken = \"{token}\"\nscopes = [\"{scope}\"]\n");
    }
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

fn token(t: &str) -> String {
    format!("Token {t}")
}

#[test]
fn every_endpoint_needs_its_scope_and_tokens_never_reach_the_log() {
    let dir = TempDir::new("ops-auth");
    let config = tokens_config(&dir);
    let log = dir.0.join("augur.log");
    let server = AugurServer::start_logging_to(
        &["--config", &config, "--partitions", "2", "--log-format", "json"],
        &[("AUGUR_AUTH__ENABLED", "true")],
        &log,
    );
    let get = |path: &str, t: Option<&str>| {
        let header = t.map(token);
        let headers: Vec<(&str, &str)> = header.iter().map(|h| ("Authorization", h.as_str())).collect();
        http_with(server.http, "GET", path, &headers, b"")
    };

    let write = |t: Option<&str>| {
        let header = t.map(token);
        let headers: Vec<(&str, &str)> = header.iter().map(|h| ("Authorization", h.as_str())).collect();
        http_with(server.http, "POST", "/api/v2/write", &headers, b"cpu,host=a,region=eu usage=1\n").0
    };
    assert_eq!(
        [write(None), write(Some("not-a-token-at-all")), write(Some(READER)), write(Some(WRITER))],
        [401, 401, 403, 204]
    );

    // The query API needs `read`; operations need `admin`, which covers everything.
    for (path, needs_admin) in [
        ("/api/v1/risk", false),
        ("/metrics", true),
        ("/api/v1/partitions", true),
        ("/api/v1/status", true),
        ("/", true),
    ] {
        assert_eq!(get(path, None).0, 401, "{path} without a token");
        assert_eq!(get(path, Some(WRITER)).0, 403, "{path} with a write token");
        assert_eq!(get(path, Some(READER)).0, if needs_admin { 403 } else { 200 }, "{path} with a read token");
        assert_eq!(get(path, Some(ADMIN)).0, 200, "{path} with an admin token");
    }
    assert_eq!(get("/ping", None).0, 204, "/ping is open");
    let (_, page) = get("/", Some(ADMIN));
    assert!(page.contains("<title>") && page.contains("/api/v1/status"), "{page}");

    // `augur loadgen` and `augur partitions` send tokens, and say so when they are refused.
    let url = format!("http://{}", server.http);
    let loadgen = |t: &str| {
        Command::new(augur_binary())
            .args(["loadgen", "--url", &url, "--duration", "1s", "--hosts", "20", "--batch", "50", "--json"])
            .args(["--connections", "1", "--token", t])
            .output()
            .unwrap()
    };
    let out = loadgen(WRITER);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = loadgen(READER);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("answered 403"), "{}", String::from_utf8_lossy(&out.stderr));

    let partitions = |t: &str| Command::new(augur_binary()).args(["partitions", "--url", &url, "--token", t]).output();
    let out = partitions(ADMIN).unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(table.lines().count(), 4, "a header, 2 partitions and the skew: {table}");
    assert!(table.contains("points/s") && table.contains("skew (max/mean points/s"), "{table}");
    let out = partitions(READER).unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("403"));

    let (_, status) = get("/api/v1/status", Some(ADMIN));
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert!(status["ingest"]["points_accepted_total"].as_u64().unwrap() > 1, "{status}");
    assert_eq!(status["partitions"].as_array().unwrap().len(), 2, "{status}");
    assert!(status["regions"].as_array().is_some() && status["shards"].as_array().is_some(), "{status}");

    // Refusals are counted; tokens never appear in the log, which is one JSON object per line.
    let (_, text) = get("/metrics", Some(ADMIN));
    assert!(metric(&text, "augur_ingest_requests_rejected_total{reason=\"auth\"}").unwrap() >= 13, "{text}");
    assert!(text.contains("augur_http_request_duration_seconds_bucket{endpoint=\"/api/v2/write\",le=\"0.005\"}"));
    assert!(server.terminate(Duration::from_secs(30)).success());
    let log = std::fs::read_to_string(&log).unwrap();
    for line in log.lines() {
        let entry: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(entry.get("message").is_some() && entry.get("level").is_some(), "{line}");
    }
    assert!(log.contains("Refused a request: authentication."), "{log}");
    for secret in [WRITER, READER, ADMIN, "not-a-token-at-all"] {
        assert!(!log.contains(secret), "a token reached the log:\n{log}");
    }
}

#[test]
fn without_tokens_the_server_refuses_to_start_unless_auth_is_off_explicitly() {
    let data = TempDir::new("ops-noauth");
    let out = Command::new(augur_binary())
        .args(["serve", "--http-addr", "127.0.0.1:0", "--tcp-addr", "127.0.0.1:0", "--data-dir"])
        .arg(&data.0)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("auth is on and no token is configured") && stderr.contains("auth.enabled = false"));

    // Off on purpose, on a wildcard address: it starts and warns (and is stopped at once).
    let dir = TempDir::new("ops-open");
    let log = dir.0.join("augur.log");
    let mut child = Command::new(augur_binary())
        .args(["serve", "--http-addr", "0.0.0.0:0", "--tcp-addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir.0.join("data"))
        .env("AUGUR_AUTH__ENABLED", "false")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    assert!(line.starts_with("augur listening http=0.0.0.0:"), "{line}");
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(child.wait().unwrap().success());
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("Authentication is off") && log.contains("beyond loopback"), "{log}");
}

/// Runs `program` with `args`; its exit code and stdout.
fn run(program: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} is needed for this test ({e}): apt-get install -y {program}"));
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn https_with_a_self_signed_certificate_made_here() {
    let dir = TempDir::new("ops-tls");
    let (cert, key) = (dir.0.join("cert.pem"), dir.0.join("key.pem"));
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let (code, _) = run(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            key,
            "-out",
            cert,
        ],
    );
    assert_eq!(code, 0, "openssl could not make a certificate");
    let config = tokens_config(&dir);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text = format!("[http]\ntls-cert = \"{cert}\"\ntls-key = \"{key}\"\n{text}");
    std::fs::write(&config, text).unwrap();
    let server = AugurServer::start_with_env(&["--config", &config], &[("AUGUR_AUTH__ENABLED", "true")]);
    let https = format!("https://127.0.0.1:{}", server.http.port());

    // curl, a real client, verifying the server against the certificate made above.
    let status = |extra: &[&str]| {
        let mut args = vec!["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", cert];
        args.extend_from_slice(extra);
        run("curl", &args)
    };
    assert_eq!(status(&[&format!("{https}/ping")]), (0, "204".into()));
    let authorization = format!("Authorization: Token {WRITER}");
    let write = [&format!("{https}/api/v2/write"), "-H", &authorization, "--data-binary", "cpu,host=a v=1"];
    assert_eq!(status(&write), (0, "204".into()));
    let admin = format!("Authorization: Token {ADMIN}");
    assert_eq!(status(&[&format!("{https}/metrics"), "-H", &admin]), (0, "200".into()));

    // No certificate check: curl refuses (60); plain HTTP on the TLS port gets no HTTP answer.
    let (code, _) = run("curl", &["-s", "-o", "/dev/null", &format!("{https}/ping")]);
    assert_eq!(code, 60, "curl must not trust a self-signed certificate it was not given");
    let (code, out) =
        run("curl", &["-s", "-o", "/dev/null", "-w", "%{http_code}", &format!("http://{}/ping", server.http)]);
    assert!(code != 0 && out == "000", "plain HTTP on the TLS port: curl exit {code}, status {out}");
    assert!(server.terminate(Duration::from_secs(30)).success());

    // A key that does not go with the certificate stops the start, naming the files.
    std::fs::write(key, "not a key").unwrap();
    let data = TempDir::new("ops-tls-bad");
    let out = Command::new(augur_binary())
        .args(["serve", "--http-addr", "127.0.0.1:0", "--tcp-addr", "127.0.0.1:0", "--config", &config, "--data-dir"])
        .arg(&data.0)
        .env("AUGUR_AUTH__ENABLED", "true")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("reading private key") && stderr.contains(key), "{stderr}");
}
