//! Records the git commit the library was built from, for `dbopt.version()`.
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=DBOPT_GIT_COMMIT");
    for path in [".git/HEAD", ".git/refs/heads", ".git/packed-refs"] {
        println!("cargo:rerun-if-changed={path}");
    }
    let commit = std::env::var("DBOPT_GIT_COMMIT").ok().or_else(|| {
        let out = Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    });
    println!(
        "cargo:rustc-env=DBOPT_GIT_COMMIT={}",
        commit.as_deref().unwrap_or("unknown")
    );
}
