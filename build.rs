//! Records the git revision for `wgpu-loss bench` reports (absent outside a git checkout).

fn main() {
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs");
    let rev = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok());
    if let Some(rev) = rev {
        println!("cargo:rustc-env=WGPU_LOSS_GIT_REVISION={}", rev.trim());
    }
}
