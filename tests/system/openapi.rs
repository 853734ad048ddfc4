//! The OpenAPI document against the running API: schemathesis generates requests for every
//! operation from `/openapi.json`, valid and invalid, and checks every answer against it.

use crate::harness::spawn_with;
use std::path::Path;

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_undocumented_answer() {
    // the fuzzer signs in and out hundreds of times: the password limits are not under test here
    let system =
        spawn_with(&[("ROOST_AUTH__ATTEMPTS_PER_ADDRESS", "1000000"), ("ROOST_AUTH__ATTEMPTS_PER_USER", "1000000")])
            .await;
    let token = system.register("alice").await;
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/system/schemathesis.toml");
    let workdir = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new("schemathesis")
        .current_dir(workdir.path())
        .env("NO_COLOR", "1")
        .arg("--config-file")
        .arg(&config)
        .args(["run", &format!("{}/openapi.json", system.http), "--checks", "all", "--max-examples", "30"])
        .args(["--seed", "1", "--header", &format!("Authorization: Bearer {token}")])
        .output()
        .await
        .expect("schemathesis runs (pip install -r tests/system/py/requirements.txt)");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{report}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(report.contains("Tested: 35"), "every operation was tested:\n{report}");
}
