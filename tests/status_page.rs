//! The status page at `/`, loaded by a real browser (headless Chromium) against the real binary
//! under load: its charts must draw data, with auth on (the page's requests carry the
//! credentials the browser was given).

use std::process::Command;
use std::time::Duration;

use augur_suite::{augur_binary, AugurServer, TempDir};

const ADMIN: &str = "admin-secret-0123456789";

/// The Chromium binary, or a failure saying how to install it.
fn chromium() -> &'static str {
    for name in ["chromium", "chromium-browser"] {
        if Command::new(name).arg("--version").output().is_ok_and(|o| o.status.success()) {
            return name;
        }
    }
    panic!("headless Chromium is needed for this test: apt-get install -y chromium (scripts/test.sh does)");
}

/// Runs headless Chromium on `url` with `args`, letting the page run 10 s of virtual time (its
/// polls every 2 s), and returns its stdout.
fn browse(url: &str, args: &[&str]) -> String {
    let out = Command::new(chromium())
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=10000"])
        .args(args)
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value of `attribute` on the element with `id` in a dumped DOM.
fn attribute(dom: &str, id: &str, attribute: &str) -> Option<String> {
    let start = dom.find(&format!("id=\"{id}\""))?;
    let tag_start = dom[..start].rfind('<')?;
    let tag_end = start + dom[start..].find('>')?;
    let tag = &dom[tag_start..tag_end];
    let at = tag.find(&format!("{attribute}=\""))? + attribute.len() + 2;
    Some(tag[at..].split('"').next()?.to_owned())
}

#[test]
fn the_status_page_draws_live_data_in_a_real_browser() {
    let dir = TempDir::new("status-page");
    let config = dir.0.join("augur.toml");
    std::fs::write(&config, format!("[[auth.tokens]]\nname = \"ops\"\ntoken = \"{ADMIN}\"\nscopes = [\"admin\"]\n"))
        .unwrap();
    let server = AugurServer::start_with_env(
        &["--config", config.to_str().unwrap(), "--partitions", "3"],
        &[("AUGUR_AUTH__ENABLED", "true")],
    );
    // Load in the background while the browser watches: regions, partitions and rates to draw.
    let url = format!("http://{}", server.http);
    let mut load = Command::new(augur_binary())
        .args(["loadgen", "--url", &url, "--duration", "25s", "--hosts", "2000", "--batch", "500"])
        .args(["--connections", "1", "--rate", "20000", "--token", ADMIN])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));

    // Without credentials the browser gets the 401 (and would ask for them).
    let refused = browse(&format!("{url}/"), &["--dump-dom"]);
    assert!(!refused.contains("data-ready=\"1\""), "{refused}");

    // With them (HTTP Basic, the token as password), the page polls and draws.
    let authed = format!("http://ops:{ADMIN}@{}/", server.http);
    let dom = browse(&authed, &["--dump-dom"]);
    assert!(dom.contains("data-ready=\"1\""), "the page never drew data:\n{dom}");
    for chart in ["ingest-chart", "region-chart", "partition-chart"] {
        let points: usize = attribute(&dom, chart, "data-points").and_then(|n| n.parse().ok()).unwrap_or(0);
        assert!(points > 0, "#{chart} draws nothing:\n{dom}");
    }
    assert_eq!(attribute(&dom, "partition-chart", "data-points").as_deref(), Some("3"), "one bar per partition");
    for region in ["us-east-1", "eu-west-1"] {
        assert!(dom.contains(region), "{region} is not shown");
    }

    // A screenshot for the docs, when asked for: AUGUR_STATUS_SCREENSHOT=docs/status-page.png.
    if let Ok(path) = std::env::var("AUGUR_STATUS_SCREENSHOT") {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
        browse(&authed, &["--window-size=1280,1000", &format!("--screenshot={}", path.display())]);
        assert!(path.exists());
    }
    let _ = load.kill();
    let _ = load.wait();
    assert!(server.terminate(Duration::from_secs(30)).success());
}
