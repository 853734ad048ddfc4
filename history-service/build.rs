//! Builds the browser chat page (web/) into OUT_DIR/web for the binary to embed: `npm ci` of
//! web/package-lock.json in OUT_DIR, then web/build.mjs. Without Node.js or the npm registry
//! the page is a notice saying so, and everything else builds as usual.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::{env, fs};

/// The files the HTTP service serves; see src/http/web.rs.
const ASSETS: [&str; 5] = ["index.html", "app.js", "style.css", "mqtt.esm.js", "sw.js"];

fn main() {
    for watched in ["web/src", "web/build.mjs", "web/package.json", "web/package-lock.json"] {
        println!("cargo:rerun-if-changed={watched}");
    }
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let assets = out.join("web");
    if let Err(why) = build(&out, &assets) {
        println!("cargo:warning=the chat page is not built ({why}); / will say so");
        fs::create_dir_all(&assets).expect("OUT_DIR is writable");
        let notice = format!(
            "<!doctype html><title>Roost</title><p>The chat page was not built: {why}. Install Node.js \
             and npm, then rebuild. The MQTT and HTTP APIs work without it.</p>"
        );
        for asset in ASSETS {
            fs::write(assets.join(asset), if asset == "index.html" { notice.as_str() } else { "" })
                .expect("OUT_DIR is writable");
        }
    }
}

fn build(out: &Path, assets: &Path) -> Result<(), String> {
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    let install = out.join("web-npm");
    fs::create_dir_all(&install).map_err(|e| e.to_string())?;
    for manifest in ["package.json", "package-lock.json"] {
        fs::copy(web.join(manifest), install.join(manifest)).map_err(|e| format!("{manifest}: {e}"))?;
    }
    run(Command::new("npm").args(["ci", "--no-audit", "--no-fund", "--silent", "--prefix"]).arg(&install))?;
    run(Command::new("node").arg(web.join("build.mjs")).arg(install.join("node_modules")).arg(assets))
}

fn run(command: &mut Command) -> Result<(), String> {
    let program = command.get_program().to_string_lossy().into_owned();
    match command.status() {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(format!("{program} failed: {status}")),
        Err(e) => Err(format!("{program} not found: {e}")),
    }
}
