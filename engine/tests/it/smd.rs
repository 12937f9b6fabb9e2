//! `augur eval multivariate` reports what SMD's reference scorer (`tests/data/smd/score.py`)
//! reports for the same scores, and the per-host scorer keeps its promises.

use std::path::PathBuf;
use std::process::Command;

use augur_engine::predict::multivariate::{read_hosts, run, score};

fn smd_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/data/smd")
}

#[test]
fn the_fleet_scores_equal_the_reference_scorers_to_the_third_decimal() {
    let out = std::env::temp_dir().join(format!("augur-smd-{}", std::process::id()));
    let fleet = run(&smd_dir().join("data"), &out, Some(&smd_dir().join("test_label"))).unwrap().unwrap();
    let json = out.join("reference.json");
    let status = Command::new("python3")
        .arg(smd_dir().join("score.py"))
        .args(["--scores".as_ref(), out.as_os_str(), "--labels".as_ref(), smd_dir().as_os_str()])
        .args(["--no-range".as_ref(), "--json".as_ref(), json.as_os_str()])
        .status()
        .expect("python3 runs SMD's reference scorer: install python3 (Debian: apt-get install -y python3)");
    assert!(status.success(), "score.py failed: {status}");
    let reference: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let summary = &reference["summary"];
    let expected = [
        ("mean best F1", summary["mean_over_machines"]["pw_f1"].as_f64(), fleet.mean_best_f1),
        ("mean AUPRC", summary["mean_over_machines"]["auprc"].as_f64(), fleet.mean_auprc),
        ("pooled best F1", summary["pooled"]["pw_f1"]["f1"].as_f64(), fleet.pooled_best_f1),
        ("F1 at 0.5", summary["fixed"]["pw_f1"].as_f64(), fleet.fixed_f1),
    ];
    for (name, reference, ours) in expected {
        let reference = reference.unwrap_or_else(|| panic!("{name} missing from {}", json.display()));
        assert!((reference - ours).abs() < 5e-4, "{name}: score.py {reference:.4}, augur {ours:.4}");
    }
    // The cut holds anomalies a host score should rank above normal rows: better than chance.
    assert!(fleet.mean_auprc > 0.05 && fleet.mean_best_f1 > 0.05, "{fleet:?}");
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn a_host_scores_causally_in_0_to_1() {
    for host in read_hosts(&smd_dir().join("data")).unwrap() {
        let whole = score(&host);
        assert_eq!(whole.len(), host.rows.len());
        assert!(whole.iter().all(|s| (0.0..=1.0).contains(s)), "{}: scores in [0, 1]", host.name);
        let mut prefix = host.clone();
        prefix.rows.truncate(host.rows.len() / 2);
        assert_eq!(score(&prefix), whole[..prefix.rows.len()], "{}: a prefix scores the same alone", host.name);
    }
}
