//! Shell completions and the manual page, generated from the parser's own
//! definitions: each is produced by the real binary and checked by the tool
//! that would read it (bash parses the completion script, groff renders the
//! page).

use std::io::Write;
use std::process::{Command, Stdio};

use crate::kit::process;

fn keygate(args: &[&str]) -> String {
    let out = process::keygate().args(args).output().expect("run keygate");
    assert!(out.status.success(), "keygate {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Feeds `input` to `program args` and returns its status and stderr.
fn pipe(program: &str, args: &[&str], input: &str) -> (bool, String) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {program}: {e}"));
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn completions_cover_every_subcommand_and_bash_parses_them() {
    let bash = keygate(&["completions", "bash"]);
    for sub in ["serve", "check-config", "keys", "accounts", "admin-token", "audit", "completions", "man"] {
        assert!(bash.contains(sub), "bash completion lacks {sub}");
    }
    let (ok, err) = pipe("bash", &["-n"], &bash);
    assert!(ok, "bash cannot parse the completion script: {err}");
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        assert!(keygate(&["completions", shell]).contains("check-config"), "{shell} completion lacks check-config");
    }
    let out = process::keygate().args(["completions", "tcsh"]).output().expect("run keygate");
    assert_eq!(out.status.code(), Some(2), "an unknown shell is a usage error");
}

#[test]
fn man_page_renders_with_groff() {
    let page = keygate(&["man"]);
    assert!(page.starts_with(".ie") || page.starts_with(".TH"), "not roff: {}", &page[..page.len().min(80)]);
    assert!(page.contains(".TH keygate"), "no title line");
    assert!(page.contains("check\\-config"), "subcommands missing from the page");
    let (ok, err) = pipe("groff", &["-man", "-Tutf8", "-ww", "-z"], &page);
    assert!(ok && err.trim().is_empty(), "groff warns: {err}");
}
