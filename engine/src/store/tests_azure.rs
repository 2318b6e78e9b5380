//! Tests against a real Azure Blob Storage emulator: Azurite (npm, installed under `tests/js` by
//! `npm ci`), started on a free loopback port. Without it they are skipped loudly, unless
//! `CONTPROF_REQUIRE_TOOLS` is set (CI), in which case they fail.

use std::path::PathBuf;
use std::process::Command;

use super::tests::{Server, commit_state, free_port, local_server_options, new_run, profile, start_server};
use super::*;

/// Azurite's well-known development account.
const ACCOUNT: &str = "devstoreaccount1";
const KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Starts Azurite's blob service, or returns `None` (after saying so) when it is not installed
/// and not required.
fn start_azurite() -> Option<Server> {
    let port = free_port();
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/js/node_modules/.bin/azurite-blob");
    let args = [
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        &port.to_string(),
        "--inMemoryPersistence",
        "--disableTelemetry",
        "--silent",
    ]
    .map(String::from);
    start_server(&bin, port, &args, "CONTPROF_REQUIRE_TOOLS", "run `npm ci` in tests/js")
}

/// Creates a container with a request signed by the account key (Shared Key), which object_store
/// cannot do: it only works inside containers. Python's standard library signs it.
fn create_container(port: u16, container: &str) {
    let script = r#"
import base64, hashlib, hmac, sys, urllib.request
from email.utils import formatdate
port, container, account, key = sys.argv[1:5]
date, version = formatdate(usegmt=True), "2021-08-06"
to_sign = "PUT\n" + "\n" * 11 + f"x-ms-date:{date}\nx-ms-version:{version}\n" + f"/{account}/{account}/{container}\nrestype:container"
sig = base64.b64encode(hmac.new(base64.b64decode(key), to_sign.encode(), hashlib.sha256).digest()).decode()
headers = {"x-ms-date": date, "x-ms-version": version, "Authorization": f"SharedKey {account}:{sig}", "Content-Length": "0"}
url = f"http://127.0.0.1:{port}/{account}/{container}?restype=container"
print(urllib.request.urlopen(urllib.request.Request(url, method="PUT", headers=headers)).status)
"#;
    let out = Command::new("python3")
        .args(["-c", script, &port.to_string(), container, ACCOUNT, KEY])
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "container creation: {}", String::from_utf8_lossy(&out.stderr));
}

fn options(port: u16) -> StoreOptions {
    let config = [
        ("azure_storage_account_name", ACCOUNT.to_owned()),
        ("azure_storage_account_key", KEY.to_owned()),
        ("azure_storage_endpoint", format!("http://127.0.0.1:{port}/{ACCOUNT}")),
        ("allow_http", "true".to_owned()),
    ];
    local_server_options(config.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

#[test]
fn azure_runs_and_production_windows_round_trip_with_leases_won_once() {
    let Some(azurite) = start_azurite() else { return };
    create_container(azurite.port, "profiles");
    let url = "az://profiles/team/proj";
    let store = Store::open_with(&StoreLocation::parse(url).unwrap(), options(azurite.port)).unwrap();
    let a = store.write_run(new_run(commit_state(C1, "main"), &[]), vec![profile("bin/x")]).unwrap();
    let log = store.log(&LogFilter::default()).unwrap();
    assert_eq!(log.runs.iter().map(|r| r.run_id.as_str()).collect::<Vec<_>>(), vec![a.run_id.as_str()]);
    assert_eq!(store.read_profile(&a.run_id, &a.profiles[0].file).unwrap(), tests::gz(b"profile bytes"));

    // Create-if-absent works on Azure (If-None-Match: *): one replica wins a window.
    let d = Deployment { service: "api".into(), version: "2".into(), zone: "westeurope".into() };
    assert_eq!(store.lease_window(&d, 1_800_000_000, "a").unwrap(), Lease::Won);
    assert_eq!(store.lease_window(&d, 1_800_000_000, "b").unwrap(), Lease::Taken);
    let key =
        WindowKey { deployment: d, profile_type: "heap".into(), start: 1_800_000_000, instance: "a".into() };
    store.put_window(&key, b"gz".to_vec()).unwrap();
    assert_eq!(store.list_windows(Some("api")).unwrap(), vec![key.clone()]);
    assert_eq!(store.get_window(&key).unwrap().as_deref(), Some(&b"gz"[..]));
}

const C1: &str = "1111111111111111111111111111111111111111";
