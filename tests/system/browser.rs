//! The browser chat page in headless Chromium (Debian's `chromium`), driven by playwright-core
//! (tests/browser/chat.mjs): two users, two browser contexts. Screenshots land in
//! target/browser-screenshots.

use crate::harness::spawn_system;
use std::path::Path;
use tokio::process::Command;

#[tokio::test]
async fn two_users_chat_in_the_browser_page() {
    let browser_tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        browser_tests.join("node_modules/playwright-core").is_dir(),
        "run `npm ci --prefix tests/browser` and `apt-get install chromium` first (.ci/run does)"
    );
    let system = spawn_system().await;
    let (status, page) = system.call("GET", "/", None, None).await;
    assert_eq!(status, 200);
    assert!(
        page.as_str().is_some_and(|html| html.contains("signin-form")),
        "the chat page was not built (cargo printed why; it needs Node.js and npm): {page}"
    );

    let screenshots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser-screenshots");
    let run = Command::new("node")
        .arg(browser_tests.join("chat.mjs"))
        .env("ROOST_HTTP", &system.http)
        .env("SCREENSHOTS", &screenshots)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(120), run)
        .await
        .expect("the browser scenario finishes within two minutes")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(
        output.status.success() && stdout.contains("browser scenario passed"),
        "browser scenario failed (screenshots in {}):\n{stdout}\n{}",
        screenshots.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}
