//! A real collectd (Debian's `collectd-core`) sends the same readings to Augur twice: as JSON with
//! its `write_http` plugin (to `POST /collectd`, with a token as the Basic-auth password) and as
//! Graphite plaintext with its `write_graphite` plugin (to the Graphite listener, mapped by a
//! template). Both arrive, with the host and the plugins' data sources.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use augur_suite::{http_with, metric, raw_rows, AugurServer, TempDir};

const WRITER: &str = "collectd-writer-0123456789";
const ADMIN: &str = "collectd-admin-0123456789";

/// collectd in the foreground, stopped on drop.
struct Collectd(Child);

impl Drop for Collectd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_real_collectd_writes_json_over_http_and_graphite_over_tcp() {
    let dir = TempDir::new("collectd");
    let config = dir.0.join("augur.toml");
    std::fs::write(
        &config,
        format!(
            "[graphite]\ntemplates = [\"collectd.* .host.measurement.field*\"]\n\
             [[auth.tokens]]\nname = \"collectd\"\ntoken = \"{WRITER}\"\nscopes = [\"write\"]\n\
             [[auth.tokens]]\nname = \"ops\"\ntoken = \"{ADMIN}\"\nscopes = [\"admin\"]\n"
        ),
    )
    .unwrap();
    let server = AugurServer::start_with_env(
        &["--config", config.to_str().unwrap(), "--graphite-addr", "127.0.0.1:0"],
        &[("AUGUR_AUTH__ENABLED", "true")],
    );
    let graphite = server.graphite.expect("the Graphite listener is on");
    let collectd_conf = dir.0.join("collectd.conf");
    std::fs::write(
        &collectd_conf,
        format!(
            r#"Hostname "web1"
FQDNLookup false
Interval 1
BaseDir "{dir}"
PIDFile "{dir}/collectd.pid"
PluginDir "/usr/lib/collectd"
TypesDB "/usr/share/collectd/types.db"
LoadPlugin load
LoadPlugin memory
LoadPlugin write_http
LoadPlugin write_graphite
<Plugin write_http>
  <Node "augur">
    URL "http://{http}/collectd"
    Format "JSON"
    User "collectd"
    Password "{WRITER}"
    StoreRates true
  </Node>
</Plugin>
<Plugin write_graphite>
  <Node "augur">
    Host "{host}"
    Port "{port}"
    Protocol "tcp"
    Prefix "collectd."
    StoreRates true
  </Node>
</Plugin>
"#,
            dir = dir.0.display(),
            http = server.http,
            host = graphite.ip(),
            port = graphite.port()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.0.join("collectd.log")).unwrap();
    let collectd = Collectd(
        Command::new("/usr/sbin/collectd")
            .arg("-f")
            .arg("-C")
            .arg(&collectd_conf)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| {
                panic!("collectd is needed for this test ({e}): apt-get install -y collectd-core libyajl2")
            }),
    );

    let admin = format!("Token {ADMIN}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, metrics) = http_with(server.http, "GET", "/metrics", &[("Authorization", &admin)], b"");
        let accepted = |protocol: &str| {
            metric(&metrics, &format!("augur_ingest_points_accepted_total{{protocol=\"{protocol}\"}}")).unwrap_or(0)
        };
        // A few intervals of each: collectd buffers what write_http sends.
        if accepted("collectd") >= 6 && accepted("graphite") >= 6 {
            let invalid = metric(&metrics, "augur_ingest_lines_rejected_total").unwrap_or(0);
            assert_eq!(invalid, 0, "collectd sent something Augur refused: {metrics}");
            break;
        }
        let log = std::fs::read_to_string(dir.0.join("collectd.log")).unwrap_or_default();
        assert!(Instant::now() < deadline, "collectd's writes did not arrive; its log:\n{log}");
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(collectd);
    let data = TempDir(server.data_dir.clone());
    assert!(server.terminate_keeping_data(Duration::from_secs(60)).success());

    let load = raw_rows(&data.0, "load");
    // write_http: one point per value list, a field per data source, tagged with its type.
    let json = load.iter().find(|r| r.get("type").is_some()).expect("a load point from write_http");
    assert_eq!((json["host"].as_str(), json["type"].as_str()), (Some("web1"), Some("load")), "{json:?}");
    assert!(
        ["shortterm", "midterm", "longterm"].iter().all(|f| json[*f].as_f64().is_some_and(|v| v >= 0.0)),
        "{json:?}"
    );
    // write_graphite: `collectd.web1.load.load.shortterm`, mapped by the template.
    let plain = load.iter().find(|r| r.contains_key("load.shortterm")).expect("a load point from write_graphite");
    assert_eq!(plain["host"], "web1", "{plain:?}");
    assert!(plain.get("type").is_none(), "{plain:?}");
    let memory = raw_rows(&data.0, "memory");
    let used = memory.iter().find(|r| r.get("type_instance").is_some_and(|t| t == "used")).expect("memory used");
    assert!(used["value"].as_f64().is_some_and(|v| v > 0.0), "{used:?}");
    assert!(memory.iter().any(|r| r.get("memory-used").is_some_and(|v| v.as_f64().is_some_and(|v| v > 0.0))));
}
